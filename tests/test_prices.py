"""Instance prices for the plan's cost bound, from the SageMaker defaults file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sm_pytest.sagemaker.prices import load_prices, prices_in_file
from sm_pytest.sagemaker.settings import SettingsError
from sm_pytest.spec.yamlsafe import YamlError
from sm_pytest.spec.yamlsafe import load as load_yaml


def test_prices_in_file(tmp_path: Path):
    config = tmp_path / "sagemaker.yaml"
    config.write_text("instance_type: ml.m5.xlarge\nprices: {ml.m5.xlarge: 0.23}\n")
    assert prices_in_file(config) == {"ml.m5.xlarge": 0.23}
    assert prices_in_file(None) == {}
    assert load_prices({"prices": {"ml.m5.xlarge": 1}}) == {"ml.m5.xlarge": 1.0}


def test_prices_in_file_errors_name_the_file(tmp_path: Path):
    config = tmp_path / "sagemaker.yaml"
    config.write_text("prices: [ml.m5.xlarge]\n")
    with pytest.raises(SettingsError, match=f"^{config}: 'prices' must be a mapping"):
        prices_in_file(config)
    config.write_text("prices: {ml.m5.xlarge: 0.23\n")
    with pytest.raises(YamlError):
        prices_in_file(config)


def test_load_prices():
    assert load_prices({}) == {}
    assert load_prices(None) == {}
    assert load_prices({"prices": {"ml.m5.xlarge": 0.23, "ml.p3.2xlarge": 4}}) == {
        "ml.m5.xlarge": 0.23, "ml.p3.2xlarge": 4.0}


@pytest.mark.parametrize("prices, message", [
    ([0.23], "'prices' must be a mapping of instance type to USD per instance-hour"),
    ({"m5.xlarge": 0.23}, "key 'm5.xlarge' is not a SageMaker instance type"),
    ({"ml.m5.xlarge": "0.23"}, r"prices.ml.m5.xlarge must be a number .* not '0.23'"),
    ({"ml.m5.xlarge": None}, r"prices.ml.m5.xlarge must be a number"),
    ({"ml.m5.xlarge": True}, r"prices.ml.m5.xlarge must be a number"),
    ({"ml.m5.xlarge": 0}, r"prices.ml.m5.xlarge must be a price above 0"),
    ({"ml.m5.xlarge": -1.5}, r"must be a price above 0 .* not -1.5"),
    ({"ml.m5.xlarge": float("inf")}, r"must be a price above 0"),
])
def test_load_prices_errors(prices, message):
    with pytest.raises(SettingsError, match=message) as info:
        load_prices({"prices": prices}, source="cfg.yaml")
    assert str(info.value).startswith("cfg.yaml: ")


def test_load_prices_from_yaml(tmp_path: Path):
    config = tmp_path / "sagemaker.yaml"
    config.write_text("instance_type: ml.m5.xlarge\nprices:\n  ml.m5.xlarge: 0.23\n"
                      "  ml.g4dn.xlarge: 0.736\n")
    assert load_prices(load_yaml(config).value) == {"ml.m5.xlarge": 0.23,
                                                    "ml.g4dn.xlarge": 0.736}
