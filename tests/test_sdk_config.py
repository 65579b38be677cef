"""sagemaker-core's config schema is checked once per process, and configs are still
validated exactly as the SDK validates them."""

from __future__ import annotations

import jsonschema
import pytest

pytest.importorskip("sagemaker.core")

from sagemaker.core.config.config_schema import SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA  # noqa: E402

from sm_pytest.sagemaker import sdk_config  # noqa: E402

GOOD = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
BAD = [
    {"SchemaVersion": "2.0"},
    {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": "yes"}}}},
    {"SchemaVersion": "1.0", "SageMaker": {"NoSuchSection": {}}},
]


def sdk_validators():
    from sagemaker.core.config import config as config_module
    from sagemaker.core.config.config_manager import SageMakerConfig
    from sagemaker.core.helper import session_helper

    return [SageMakerConfig.validate_sagemaker_config, SageMakerConfig().validate_sagemaker_config,
            config_module.validate_sagemaker_config, session_helper.validate_sagemaker_config]


def test_every_sdk_entry_point_is_patched():
    assert sdk_config.install() is True
    assert all(v is sdk_config.validate_sagemaker_config for v in sdk_validators())


@pytest.mark.parametrize("config", BAD)
def test_invalid_configs_raise_what_jsonschema_validate_raises(config):
    sdk_config.install()
    with pytest.raises(jsonschema.ValidationError) as expected:
        jsonschema.validate(config, SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
    for validate in sdk_validators():
        with pytest.raises(jsonschema.ValidationError) as got:
            validate(config)
        assert got.value.message == expected.value.message
        assert list(got.value.absolute_path) == list(expected.value.absolute_path)


def test_the_schema_is_checked_once(monkeypatch):
    sdk_config.install()
    sdk_config._validator.cache_clear()
    validator_class = jsonschema.validators.validator_for(SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
    checks = []
    original = validator_class.check_schema
    monkeypatch.setattr(validator_class, "check_schema",
                        classmethod(lambda cls, schema: checks.append(1) or original(schema)))
    for _ in range(5):
        for validate in sdk_validators():
            validate(GOOD)
    assert checks == [1]


def test_other_sdk_versions_are_left_alone(monkeypatch):
    from sagemaker.core.config.config_manager import SageMakerConfig

    monkeypatch.setattr(sdk_config, "dist_version", lambda name: "2.28.0")
    before = SageMakerConfig.__dict__["validate_sagemaker_config"]
    assert sdk_config.install() is False
    assert SageMakerConfig.__dict__["validate_sagemaker_config"] is before


def test_an_sdk_without_metadata_is_left_alone(monkeypatch):
    from importlib.metadata import PackageNotFoundError

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(sdk_config, "dist_version", missing)
    assert sdk_config.install() is False
