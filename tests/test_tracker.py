"""sm_pytest/store/tracker.py and backends/base.JobTracker: the two tracker interfaces, and
that the trackers we ship implement them."""

from __future__ import annotations

import inspect

import pandas  # noqa: F401  (before any in-process pytester run: numpy loads once per process)

from sm_pytest.backends.base import JobTracker
from sm_pytest.store.tracker import Tracker
from sm_pytest.store.tracking import LocalTracker, runs_frame


def test_the_local_store_is_a_tracker_of_finished_items(tmp_path):
    assert isinstance(LocalTracker(tmp_path / "t.sqlite", "s1"), Tracker)


def test_mlflow_is_a_tracker_of_finished_items(tmp_path):
    from sm_pytest.store.mlflow_tracking import MlflowTracker

    assert isinstance(MlflowTracker("http://127.0.0.1:5000", "s1", tmp_path / "t.sqlite"),
                      Tracker)


def test_sagemaker_experiments_has_the_job_tracker_methods():
    from sm_pytest.sagemaker.experiments import SageMakerExperiments

    for name in ("start_run", "finish_run"):
        wanted = inspect.signature(getattr(JobTracker, name))
        found = inspect.signature(getattr(SageMakerExperiments, name))
        assert list(found.parameters) == list(wanted.parameters), name


def test_the_session_records_each_item_in_every_tracker(project):
    """A second tracker beside the embedded store sees every item once, with its verdict:
    what an MLflow tracker will be given."""
    project.experiment("lr_sweep", """
        base: config/base.yaml
        matrix: {accuracy: [0.97, 0.5]}
        expect: {accuracy: ">= 0.9"}
    """)
    project.pytester.makeconftest("""
import pytest
from sm_pytest.session import SESSION

class Spy:
    def __init__(self):
        self.seen = []

    def record(self, rec):
        self.seen.append((rec.name, rec.verdict))

    def close(self, *, interrupted):
        return [f"SPY closed, interrupted={interrupted}"]

SPY = Spy()

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.stash[SESSION].trackers.append(SPY)

def pytest_unconfigure(config):
    print("SPY", sorted(SPY.seen))
""")
    result = project.run("-s")
    result.assert_outcomes(passed=1, failed=1)
    assert ("SPY [('lr_sweep[accuracy=0.5]', 'fail'), ('lr_sweep[accuracy=0.97]', 'pass')]"
            in result.stdout.str())
    # closed once at the end, and what it says comes after the table
    out = result.stdout.str()
    assert out.count("SPY closed, interrupted=False") == 1
    assert out.index("sm-pytest runs") < out.index("SPY closed")
    frame = runs_frame(project.artifacts / "tracking.sqlite")
    assert sorted(frame["verdict"]) == ["fail", "pass"]


def test_a_tracker_that_fails_costs_no_result(project):
    """A tracker's error is a notice after the table: the session passes, the other trackers
    and the local store still have the run."""
    project.experiment("baseline", """
        base: config/base.yaml
        expect: {accuracy: ">= 0.9"}
    """)
    project.pytester.makeconftest("""
import pytest
from sm_pytest.session import SESSION

class BrokenTracker:
    def record(self, rec):
        raise ConnectionError("tracking server unreachable")

    def close(self, *, interrupted):
        raise ConnectionError("still unreachable")

class Spy:
    seen = []

    def record(self, rec):
        self.seen.append(rec.name)

    def close(self, *, interrupted):
        return []

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    trackers = config.stash[SESSION].trackers
    trackers.insert(0, BrokenTracker())
    trackers.append(Spy())

def pytest_unconfigure(config):
    print("SPY", Spy.seen)
""")
    result = project.run("-s")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    out = result.stdout.str()
    assert "SPY ['baseline']" in out
    table, notice = out.index("sm-pytest runs"), out.index(
        "run baseline was not tracked by BrokenTracker: ConnectionError: tracking server"
        " unreachable")
    assert table < notice
    assert ("BrokenTracker could not finish: ConnectionError: still unreachable"
            in out[table:])
    assert "INTERNALERROR" not in out
    frame = runs_frame(project.artifacts / "tracking.sqlite")
    assert list(frame["verdict"]) == ["pass"]
    # The run cache remembered it despite the tracker before it.
    project.run("--sm-reuse").stdout.fnmatch_lines(["run cache: 1 reused, 0 trained"])
