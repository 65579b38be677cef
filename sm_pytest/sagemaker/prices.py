"""What SageMaker training instances cost, for the plan's bound (report/plan.py): the
``prices:`` mapping (instance type -> USD per instance-hour, on-demand, training) of the
SageMaker defaults file, config/sagemaker.yaml. Prices are per instance type, so they
belong with the SageMaker settings, not with the report that prints them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sm_pytest.sagemaker.settings import SettingsError

__all__ = ["PRICES_KEY", "load_prices", "prices_in_file"]

PRICES_KEY = "prices"


def load_prices(config: Mapping[str, Any] | None,
                source: str = "config/sagemaker.yaml") -> dict[str, float]:
    """The ``prices:`` mapping of a parsed config file: instance type -> USD per
    instance-hour. No ``prices:`` gives {}; anything else wrong is a SettingsError naming the
    entry and what to write."""
    raw = (config or {}).get(PRICES_KEY)
    if raw is None:
        return {}
    example = "e.g.\n  prices:\n    ml.m5.xlarge: 0.23"
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{source}: '{PRICES_KEY}' must be a mapping of instance type to"
                            f" USD per instance-hour, {example}")
    prices = {}
    for instance_type, price in raw.items():
        where = f"{source}: {PRICES_KEY}.{instance_type}"
        if not isinstance(instance_type, str) or not instance_type.startswith("ml."):
            raise SettingsError(f"{source}: '{PRICES_KEY}' key {instance_type!r} is not a"
                                f" SageMaker instance type; write it as ml.<family>.<size>,"
                                f" {example}")
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            raise SettingsError(f"{where} must be a number of USD per instance-hour, such as"
                                f" 0.23, not {price!r}")
        if not math.isfinite(price) or price <= 0:
            raise SettingsError(f"{where} must be a price above 0 (USD per instance-hour),"
                                f" not {price!r}")
        prices[instance_type] = float(price)
    return prices


def prices_in_file(path: Path | None) -> dict[str, float]:
    """The prices of a SageMaker defaults file; {} without one."""
    if path is None:
        return {}
    from sm_pytest.spec.yamlsafe import load

    return load_prices(load(path).value, str(path))
