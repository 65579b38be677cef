"""The SageMaker session made from the options, ini values and the defaults file (--sm)."""

from __future__ import annotations

import pytest

from sm_pytest.sagemaker_hooks import PLAN_FILE
from sm_pytest.session import SESSION


def test_sagemaker_session_from_options_and_ini(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nsm_bucket = from-ini\nsm_spot = true\n")
    config = pytester.parseconfigure("--sm", "--sm-emulate", "--sm-region", "eu-west-1")
    session = config.stash[SESSION]
    sagemaker = session.sagemaker
    assert sagemaker.cli["region"] == "eu-west-1" and sagemaker.cli["emulate"] is True
    assert sagemaker.cli["bucket"] is None and sagemaker.ini["bucket"] == "from-ini"
    assert sagemaker.ini["spot"] is True and sagemaker.ini["region"] is None
    assert sagemaker.config_path is None  # no config/sagemaker.yaml in this project
    assert sagemaker.token == session.session_id[-6:]
    assert sagemaker.plan_file == session.artifacts_root / PLAN_FILE
    assert sagemaker.plan_key is None  # not an xdist worker
    assert config.pluginmanager.get_plugin("sm-pytest-sagemaker") is not None


def test_sagemaker_session_reads_the_defaults_file(pytester: pytest.Pytester):
    (pytester.path / "config").mkdir()
    (pytester.path / "config" / "sagemaker.yaml").write_text("instance_type: ml.m5.xlarge\n")
    sagemaker = pytester.parseconfigure("--sm").stash[SESSION].sagemaker
    assert sagemaker.config_path == pytester.path / "config" / "sagemaker.yaml"


def test_no_sagemaker_hooks_without_sm(pytester: pytest.Pytester):
    config = pytester.parseconfigure()
    assert config.stash[SESSION].sagemaker is None
    assert config.pluginmanager.get_plugin("sm-pytest-sagemaker") is None


class StoppingBackend:
    """What SageMakerSession.close() asks of its backend, with two jobs still running."""

    def __init__(self):
        self.stopped: list[str] = []
        self.running = ["job-a", "job-b"]

    def stop_all(self):
        self.stopped += self.running
        self.running = []

    def close(self):
        pass

    def leftovers(self):
        return []

    def pool_jobs(self):
        return []  # no job asked for a warm pool


@pytest.mark.parametrize("what", ["on interrupt", "still running"])
def test_stop_jobs_names_the_jobs_it_stopped_as_a_notice(what):
    from sm_pytest.backends.sagemaker_session import ON_INTERRUPT, STILL_RUNNING, SageMakerSession

    what = ON_INTERRUPT if what == "on interrupt" else STILL_RUNNING
    notices = []
    sagemaker = SageMakerSession(cli={}, ini={}, config_path=None, token="abc123",
                                 emit=lambda line: None, notify=notices.append)
    sagemaker.stop_jobs(what)
    assert notices == []  # nothing launched: nothing to say
    sagemaker.backend = StoppingBackend()
    sagemaker.stop_jobs(what)
    assert notices == [f"{what}: job-a, job-b"]
    sagemaker.stop_jobs(what)
    assert len(notices) == 1  # stopped once, said once
