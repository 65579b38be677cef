"""The backend chosen in one place: local, or the SageMaker session's once it is started."""

from __future__ import annotations

import pytest

from sm_pytest.backends.choose import backend_settings, choose_backend
from sm_pytest.backends.local import LocalBackend
from sm_pytest.sagemaker.settings import SageMakerSettings, fingerprint_settings
from sm_pytest.session import SESSION


class FakeSageMaker:
    """What choose_backend and backend_settings ask of a SageMakerSession."""

    def __init__(self):
        self.started: list[list] = []
        self.backend = type("Backend", (), {"name": "sagemaker"})()

    def start(self, runs):
        self.started.append(runs)
        return self.backend

    def settings_for(self, run):
        return SageMakerSettings(instance_type="ml.g5.xlarge", spot=True)


def test_local_backend_without_sagemaker():
    lines: list[str] = []
    backend = choose_backend(None, echo=lines.append, progress=lines.append)
    assert isinstance(backend, LocalBackend)
    assert backend.echo == lines.append and backend.progress == lines.append


def test_sagemaker_backend_is_the_sessions_and_plans_the_runs():
    sagemaker = FakeSageMaker()
    first = choose_backend(sagemaker, ("a", "b"), progress=print)
    again = choose_backend(sagemaker, ("c",), progress=None)
    assert first is again is sagemaker.backend
    assert sagemaker.started == [["a", "b"], ["c"]]
    assert first.live_progress is False  # the last caller has nobody to read its lines


def test_backend_settings_name_the_backend_of_the_fingerprint():
    assert backend_settings(None, "run") == ("local", {})
    sagemaker = FakeSageMaker()
    assert backend_settings(sagemaker, "run") == (
        "sagemaker", fingerprint_settings(sagemaker.settings_for("run")))


def test_session_backend_is_local_without_sm(pytester: pytest.Pytester):
    config = pytester.parseconfigure()
    session = config.stash[SESSION]
    assert isinstance(session.backend, LocalBackend)
    assert session.backend is session.backend
    assert session.backend_settings("run") == ("local", {})


def test_session_backend_before_sagemaker_started_is_an_error(pytester: pytest.Pytester):
    config = pytester.parseconfigure("--sm", "--sm-emulate")
    session = config.stash[SESSION]
    with pytest.raises(RuntimeError, match="before start_sagemaker"):
        session.backend  # noqa: B018


def test_plan_only_follows_sm_plan(pytester: pytest.Pytester):
    assert pytester.parseconfigure("--sm-plan").stash[SESSION].plan_only is True
    assert pytester.parseconfigure().stash[SESSION].plan_only is False
