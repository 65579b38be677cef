"""The options and ini values: their defaults, and an ini value for each SageMaker option."""

from __future__ import annotations

import pytest

from sm_pytest.options import SM_VALUE_OPTIONS


def test_defaults(pytester: pytest.Pytester):
    config = pytester.parseconfig()
    for dest in ("sm", "sm_plan", "sm_reuse", "sm_rerun", "sm_save_baseline_force",
                 "sm_baseline_strict"):
        assert config.getoption(dest) is False
    for dest in ("spot", "sm_emulate", "sm_plots", "sm_artifacts", "sm_baseline",
                 "sm_save_baseline", "sm_history"):
        assert config.getoption(dest) is None
    assert config.getini("sm_artifacts") == "sm-artifacts"
    assert config.getini("sm_experiment_paths") == ["experiments"]
    assert config.getini("sm_config") == "config/sagemaker.yaml"
    assert config.getini("sm_plots") is False


def test_each_sagemaker_value_has_an_option_and_an_ini_value(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\n" + "".join(f"sm_{name} = ini-{name}\n"
                                            for name, _, _ in SM_VALUE_OPTIONS))
    args = [arg for name, _, _ in SM_VALUE_OPTIONS
            for arg in (f"--sm-{name.replace('_', '-')}", f"cli-{name}")]
    config = pytester.parseconfig(*args)
    for name, _, _ in SM_VALUE_OPTIONS:
        assert config.getoption(f"sm_{name}") == f"cli-{name}"
        assert config.getini(f"sm_{name}") == f"ini-{name}"
