"""The emulator's testing knobs (SM_PYTEST_EMULATE_*): what each variable arranges on the
Emulator, and the SettingsError a bad value gets, read before any emulator starts. Also that
reading them, like importing anything of the emulator package but its face, stays free of
moto and boto3."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sm_pytest.sagemaker.emulator import knobs
from sm_pytest.sagemaker.settings import SettingsError


class RecordingEmulator:
    """What the knobs call on an Emulator, recorded."""

    account_id = "123456789012"
    region = "us-east-1"

    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
        return record


def _applied(environ: dict[str, str]) -> list[tuple]:
    emulator = RecordingEmulator()
    for knob in knobs.from_environment(environ):
        knob(emulator)
    return emulator.calls


def test_no_variables_no_knobs():
    assert knobs.from_environment({}) == []
    assert knobs.from_environment({"SM_PYTEST_EMULATE_THROTTLE": "",
                                   "SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS": " , "}) == []


def test_spot_interruptions_arm_each_prefix_after_a_checkpoint():
    assert _applied({"SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS": "sweep-a, sweep-b"}) == [
        ("interrupt_spot", ("sweep-a",), {"after_checkpoint": True}),
        ("interrupt_spot", ("sweep-b",), {"after_checkpoint": True}),
    ]


def test_throttle_throttles_the_first_create_training_jobs():
    assert _applied({"SM_PYTEST_EMULATE_THROTTLE": "2"}) == [
        ("throttle", ("CreateTrainingJob",),
         {"times": 2, "code": "ThrottlingException", "message": None})]
    assert _applied({"SM_PYTEST_EMULATE_THROTTLE": "1",
                     "SM_PYTEST_EMULATE_THROTTLE_CODE": "ResourceLimitExceeded",
                     "SM_PYTEST_EMULATE_THROTTLE_MESSAGE": "no instances"}) == [
        ("throttle", ("CreateTrainingJob",),
         {"times": 1, "code": "ResourceLimitExceeded", "message": "no instances"})]
    assert _applied({"SM_PYTEST_EMULATE_THROTTLE": "0"}) == []


def test_no_spot_capacity_withholds_it_for_each_prefix():
    assert _applied({"SM_PYTEST_EMULATE_NO_SPOT_CAPACITY": "a,b"}) == [
        ("withhold_spot_capacity", ("a",), {}), ("withhold_spot_capacity", ("b",), {})]


def test_log_pages_pages_get_log_events():
    assert _applied({"SM_PYTEST_EMULATE_LOG_PAGES": "2,3"}) == [
        ("paginate_logs", (), {"page_size": 2, "empty_pages": 3})]
    assert _applied({"SM_PYTEST_EMULATE_LOG_PAGES": "5"}) == [
        ("paginate_logs", (), {"page_size": 5, "empty_pages": 0})]


def test_experiment_runs_records_earlier_runs_in_each_experiment(monkeypatch):
    from sm_pytest.sagemaker.emulator import trial_components

    recorded = []
    monkeypatch.setattr(trial_components, "record_earlier_runs",
                        lambda *args: recorded.append(args))
    knobs_made = knobs.from_environment(
        {"SM_PYTEST_EMULATE_EXPERIMENT_RUNS": "lr-sweep=30, other = 2"})
    for knob in knobs_made:
        knob(RecordingEmulator())
    assert recorded == [("123456789012", "us-east-1", "lr-sweep", 30),
                        ("123456789012", "us-east-1", "other", 2)]


def test_all_knobs_together_in_their_order():
    names = [call[0] for call in _applied({
        "SM_PYTEST_EMULATE_LOG_PAGES": "1,1",
        "SM_PYTEST_EMULATE_NO_SPOT_CAPACITY": "c",
        "SM_PYTEST_EMULATE_THROTTLE": "1",
        "SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS": "s",
    })]
    assert names == ["interrupt_spot", "throttle", "withhold_spot_capacity", "paginate_logs"]


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SM_PYTEST_EMULATE_THROTTLE", "two",
     "SM_PYTEST_EMULATE_THROTTLE='two': 'two' is not a whole number of at least 0; "
     "the variable takes N, e.g. 2"),
    ("SM_PYTEST_EMULATE_THROTTLE", "-1", "'-1' is not a whole number of at least 0"),
    ("SM_PYTEST_EMULATE_LOG_PAGES", "0,1",
     "SM_PYTEST_EMULATE_LOG_PAGES='0,1': '0' is not a whole number of at least 1; "
     "the variable takes <page size>,<empty pages>, e.g. 2,3"),
    ("SM_PYTEST_EMULATE_LOG_PAGES", "2,many", "'many' is not a whole number of at least 0"),
    ("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "=3",
     "SM_PYTEST_EMULATE_EXPERIMENT_RUNS='=3': '=3' names no experiment; the variable takes "
     "<SageMaker experiment>=<runs>[,...], e.g. lr-sweep=30"),
    ("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "sweep",
     "SM_PYTEST_EMULATE_EXPERIMENT_RUNS='sweep': '' is not a whole number of at least 0"),
    ("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "sweep=1.5",
     "'1.5' is not a whole number of at least 0"),
])
def test_a_bad_value_is_a_settings_error_naming_the_variable(variable, value, message):
    with pytest.raises(SettingsError) as refused:
        knobs.from_environment({variable: value})
    assert message in str(refused.value)


def _modules_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running ``code``."""
    script = (f"{code}\nimport json, sys\n"
              "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    return set(json.loads(subprocess.check_output([sys.executable, "-c", script], text=True)))


def test_the_knobs_and_the_package_import_without_moto():
    for code in ("import sm_pytest.sagemaker.emulator.knobs",
                 "import sm_pytest.sagemaker.emulator.job_host"):
        loaded = _modules_after(code)
        assert "sm_pytest" in loaded
        assert not loaded & {"moto", "boto3", "botocore"}, code


def test_the_package_face_still_names_the_emulator():
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    loaded = _modules_after(
        "from sm_pytest.sagemaker.emulator import Emulator, EmulatorError\n"
        "from sm_pytest.sagemaker.emulator.service import Emulator as Service\n"
        "assert Emulator is Service and issubclass(EmulatorError, RuntimeError)\n"
        "import sm_pytest.sagemaker.emulator as package\n"
        "assert {'Emulator', 'EmulatorError'} <= set(dir(package))\n"
        "try:\n    package.Unknown\nexcept AttributeError:\n    pass\n"
        "else:\n    raise SystemExit('no AttributeError')")
    assert "moto" in loaded  # what the face promises, on first use
