"""The run cache: hits, misses and their explanations, results rebuilt from result.json."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
from pathlib import Path

import pytest

from sm_pytest.backends.runner import save
from sm_pytest.model import COMPLETED, RunRecord, RunResult
from sm_pytest.run import fingerprint as fp
from sm_pytest.spec import thresholds
from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.metrics import MetricDefinition
from sm_pytest.store.run_cache import CachedRun, RunCache
from sm_pytest.store.tracking import LocalTracker

SM = {"instance_type": "ml.m5.xlarge", "instance_count": 1, "spot": False}
# The cache knows a run by its artifacts folder; the tracking store by its item's name.
NAME = "exp/lr=0.1"
ITEM = "exp[lr=0.1]"


def make_run(root: Path, **changes) -> RunSpec:
    run = RunSpec(
        experiment="exp", run_id="lr=0.1", path=root / "exp.yaml", line=1, description="",
        source_dir=root / "src", entry_point="train.py",
        hyperparameters={"lr": 0.1, "epochs": 2}, swept={"lr": 0.1},
        inputs={"training": str(root / "data")},
        metric_definitions=(MetricDefinition("accuracy", r"accuracy=([0-9.]+)"),),
        expect=(thresholds.parse("accuracy", ">= 0.5"),), marks=(), max_run=60, sagemaker={},
    )
    return dataclasses.replace(run, **changes)


def make_result(attempt: Path, **changes) -> RunResult:
    attempt.mkdir(parents=True, exist_ok=True)
    result = RunResult(
        status=COMPLETED, artifact_dir=attempt, log_path=attempt / "train.log",
        model_dir=attempt / "model", final_metrics={"accuracy": 0.97, "loss": math.nan},
        metric_series={"accuracy": [0.9, 0.97], "loss": [0.3, math.nan]}, exit_code=0,
        started_at=100.0, ended_at=160.5, backend="sagemaker", instance_type="ml.m5.xlarge",
        job_name="exp-lr-0-1-abc", billable_seconds=30.0, training_seconds=60.0, spot=True,
    )
    return dataclasses.replace(result, **changes)


class Project:
    def __init__(self, root: Path):
        self.root = root
        (root / "src").mkdir()
        (root / "src" / "train.py").write_text("print('accuracy=0.97')\n")
        (root / "data").mkdir()
        (root / "data" / "train.bin").write_bytes(b"\x01" * 100)
        self.cache = RunCache(root / "artifacts" / "tracking.sqlite")
        self.attempts = 0

    def parts(self, run=None, backend="sagemaker", settings=SM):
        run = run or make_run(self.root)
        return fp.fingerprint_parts(run, backend=backend, backend_settings=settings)

    def remember(self, run=None, backend="sagemaker", settings=SM, name=NAME) -> Path:
        """Run 'training' (write a result.json as the runner does) and remember it."""
        self.attempts += 1
        attempt = self.root / "artifacts" / "exp" / "lr=0.1" / f"attempt-{self.attempts:04d}"
        result = make_result(attempt)
        save(result)
        parts = self.parts(run, backend, settings)
        self.cache.remember(fp.digest_parts(parts), parts, name, attempt / "result.json")
        return attempt / "result.json"

    def lookup(self, run=None, backend="sagemaker", settings=SM) -> CachedRun | None:
        return self.cache.lookup(fp.digest_parts(self.parts(run, backend, settings)))

    def why(self, run=None, backend="sagemaker", settings=SM, name=NAME, item=ITEM) -> str:
        return self.cache.explain_miss(self.parts(run, backend, settings), name,
                                       item_name=item)


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


def test_result_round_trips_through_result_json(tmp_path):
    result = make_result(tmp_path / "attempt-0001", failure_reason="", spot=True)
    save(result)
    data = json.loads((tmp_path / "attempt-0001" / "result.json").read_text())
    assert "duration_s" in data and "spot_saving" in data  # derived keys are written...
    rebuilt = RunResult.from_json(data)  # ...and dropped again
    assert isinstance(rebuilt.artifact_dir, Path) and isinstance(rebuilt.log_path, Path)
    assert isinstance(rebuilt.model_dir, Path)
    assert math.isnan(rebuilt.final_metrics.pop("loss"))
    assert math.isnan(rebuilt.metric_series["loss"].pop())
    result.final_metrics.pop("loss")
    result.metric_series["loss"].pop()
    assert rebuilt == result
    assert rebuilt.duration_s == 60.5 and rebuilt.spot_saving == 0.5


def test_hit_after_remember(project):
    assert project.lookup() is None
    assert project.why() == "never run"
    path = project.remember()
    hit = project.lookup()
    assert hit is not None and hit.run_name == NAME and hit.result_path == path.resolve()
    assert hit.result["final_metrics"]["accuracy"] == 0.97
    assert hit.run_result().job_name == "exp-lr-0-1-abc"
    assert hit.recorded > 0
    assert project.why() == "cached"


def test_threshold_and_max_run_changes_still_hit(project):
    project.remember()
    relaxed = make_run(project.root, max_run=999,
                       expect=(thresholds.parse("accuracy", ">= 0.99"),))
    assert project.lookup(relaxed) is not None


@pytest.mark.parametrize("edit, reason", [
    (lambda root: make_run(root, hyperparameters={"lr": 0.2, "epochs": 2}),
     "hyperparameters changed"),
    (lambda root: (root / "src" / "train.py").write_text("print('v2')\n") and None,
     "source changed"),
    (lambda root: (root / "data" / "train.bin").write_bytes(b"\x02" * 101) and None,
     "data changed (input 'training')"),
    (lambda root: make_run(root, entry_point="other.py"), "entry point changed"),
    (lambda root: make_run(root, metric_definitions=()), "metric definitions changed"),
    (lambda root: make_run(root, inputs={}), "input 'training' removed"),
])
def test_each_part_misses_and_is_named(project, edit, reason):
    project.remember()
    run = edit(project.root) or make_run(project.root)
    assert project.lookup(run) is None
    assert project.why(run) == reason


@pytest.mark.parametrize("settings", [
    {**SM, "instance_type": "ml.c5.xlarge"}, {**SM, "instance_count": 2},
    {**SM, "spot": True},
])
def test_instance_settings_miss(project, settings):
    project.remember()
    assert project.lookup(settings=settings) is None
    assert project.why(settings=settings) == "backend/instance settings changed"
    assert project.lookup(backend="local", settings={}) is None


def test_several_changes_are_all_named(project):
    project.remember()
    (project.root / "src" / "train.py").write_text("print('v2')\n")
    run = make_run(project.root, hyperparameters={"lr": 0.3, "epochs": 2})
    assert project.why(run) == "hyperparameters changed, source changed"


def test_explain_compares_with_latest_entry_of_that_run(project):
    project.remember()
    (project.root / "src" / "train.py").write_text("print('v2')\n")
    assert project.why() == "source changed"
    project.remember()  # the newer source passed too
    assert project.lookup() is not None
    run = make_run(project.root, hyperparameters={"lr": 0.5, "epochs": 2})
    assert project.why(run) == "hyperparameters changed"
    assert project.why(run, name="exp/lr=0.5", item="exp[lr=0.5]") == "never run"


def test_never_passed_when_tracking_knows_the_run(project):
    LocalTracker(project.cache.db_path, "s1").record(RunRecord(
        experiment="exp", description="", path="exp.yaml", run_id="lr=0.1",
        name=ITEM, status="failed", verdict="error", backend="local",
        instance_type="local", job_name="", started_at=0, ended_at=1,
        duration_s=1, artifact_dir="", log_path="", model_dir="",
        failure_reason="boom", swept={}, hyperparameters={}, metric_series={},
        cached=False, repeats=[],
    ))
    assert project.why() == "never passed"
    project.remember()  # and the tracking tables are still there beside ours
    with sqlite3.connect(project.cache.db_path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "metrics", "run_cache"} <= tables


def test_deleted_or_broken_result_json_is_a_miss(project):
    path = project.remember()
    path.unlink()
    assert project.lookup() is None
    assert project.why().startswith("cached result.json is gone or unreadable")
    path.write_text("{not json")
    assert project.lookup() is None
    path.write_text(json.dumps({"status": "completed"}))
    assert project.lookup() is None
    path.write_text(json.dumps(make_result(path.parent, status="failed").to_json()))
    assert project.lookup() is None
    project.remember()  # a new passing run replaces the entry
    assert project.lookup() is not None


def test_remember_replaces_same_fingerprint(project):
    first = project.remember()
    second = project.remember()
    assert first != second
    assert project.lookup().result_path == second.resolve()
    with sqlite3.connect(project.cache.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM run_cache").fetchone() == (1,)


def test_existing_table_is_reused_and_parts_round_trip(project):
    project.remember()
    again = RunCache(project.cache.db_path)  # a second session
    assert again.lookup(fp.digest_parts(project.parts())) is not None
    with sqlite3.connect(project.cache.db_path) as db:
        (stored,) = db.execute("SELECT parts FROM run_cache").fetchone()
    assert json.loads(stored) == project.parts()


def test_one_writer_many_readers(project):
    """Threads writing and reading at once: no 'database is locked', nothing lost."""
    parts = project.parts()
    result_path = project.remember()
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(20):
                project.cache.remember(f"{i}-{j}", parts, f"run{i}", result_path)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(20):
                assert project.cache.lookup(fp.digest_parts(parts)) is not None
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with sqlite3.connect(project.cache.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM run_cache").fetchone() == (41,)
