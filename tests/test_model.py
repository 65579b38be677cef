"""The per-run record: built from a run and its results, JSON only across the xdist
boundary, and the status a person reads for a run reused from the run cache."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sm_pytest.model import (
    CACHED,
    COMPLETED,
    FAILED,
    CheckRecord,
    GateRow,
    RepeatRecord,
    RunRecord,
    RunResult,
)
from sm_pytest.report.junit import junit_properties
from sm_pytest.spec import thresholds
from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.thresholds import evaluate


def make_run(root: Path) -> RunSpec:
    return RunSpec(
        experiment="exp", run_id="lr=0.1", path=root / "exp.yaml", line=1, description="d",
        source_dir=root, entry_point="train.py", hyperparameters={"lr": 0.1, "seed": 1},
        swept={"lr": 0.1}, inputs={}, metric_definitions=(),
        expect=(thresholds.parse("accuracy", ">= 0.9"),), marks=(), max_run=60)


def make_result(root: Path, accuracy: float = 0.95, **changes) -> RunResult:
    result = RunResult(status=COMPLETED, artifact_dir=root / "a", log_path=root / "a/train.log",
                       model_dir=root / "a/model", final_metrics={"accuracy": accuracy},
                       metric_series={"accuracy": [0.5, accuracy]}, started_at=10.0,
                       ended_at=12.5)
    return dataclasses.replace(result, **changes)


@dataclasses.dataclass
class Prepared:  # what session.Pending gives the record
    run: RunSpec
    fingerprint: str = "f1"
    parts: dict = dataclasses.field(default_factory=lambda: {"source": "s"})
    cached: RunResult | None = None
    miss: str = "never run"

    @property
    def cache_name(self) -> str:
        return f"{self.run.experiment}/{self.run.folder}"


class Outcome:  # what gating.gate.GateOutcome gives the record
    message, state = "improved", "gated"

    def rows(self) -> list[GateRow]:
        return [GateRow(metric="accuracy", verdict="improved", gated=True, baseline=0.9,
                        now=0.95, delta=0.05, allowed=0.01, arrow="↑ +0.05")]


def record_of(tmp_path: Path, *, cached: bool) -> RunRecord:
    run, result = make_run(tmp_path), make_result(tmp_path)
    pending = [Prepared(run, cached=result if cached else None)]
    return RunRecord.of(run, 3, result, "pass", evaluate(run.expect, result.final_metrics),
                        pending=pending, results=[result], gate=Outcome())


def test_the_record_holds_the_run_its_repeats_checks_and_gate(tmp_path):
    rec = record_of(tmp_path, cached=False)
    assert (rec.experiment, rec.name, rec.order, rec.verdict) == ("exp", "exp[lr=0.1]", 3,
                                                                  "pass")
    assert rec.status == rec.shown_status == COMPLETED and not rec.cached
    assert rec.artifact_dir == str(tmp_path / "a") and rec.duration_s == 2.5
    assert rec.checks == [CheckRecord("accuracy", ">= 0.9", 0.95, True)]
    assert rec.gate[0].arrow == "↑ +0.05" and rec.gate_state == "gated"
    assert rec.repeat_finals == {"accuracy": [0.95]} and rec.fingerprint == "f1"
    (repeat,) = rec.repeats
    assert isinstance(repeat, RepeatRecord)
    assert repeat.result_path == str(tmp_path / "a" / "result.json")
    assert (repeat.cache_name, repeat.miss, repeat.cached) == ("exp/lr=0.1", "never run", False)


def test_a_cached_run_keeps_its_real_status_and_shows_cached(tmp_path):
    rec = record_of(tmp_path, cached=True)
    assert rec.cached and rec.status == COMPLETED
    assert rec.shown_status == CACHED == "cached"
    assert dict(junit_properties(rec))["sm.status"] == "cached"


def test_a_run_that_never_started_has_no_repeats_and_is_not_cached(tmp_path):
    run = make_run(tmp_path)
    result = make_result(tmp_path, status=FAILED, final_metrics={}, failure_reason="no")
    rec = RunRecord.of(run, 0, result, "error", [], pending=None, results=None)
    assert rec.repeats == [] and not rec.cached and rec.shown_status == FAILED
    assert rec.gate == [] and rec.gate_message == rec.gate_state == "" and rec.fingerprint == ""


def test_json_round_trip_is_plain_json_and_gives_the_same_record(tmp_path):
    for cached in (False, True):
        rec = record_of(tmp_path, cached=cached)
        data = json.loads(json.dumps(rec.to_json()))  # what crosses to the xdist controller
        back = RunRecord.from_json(data)
        assert back == rec
        assert isinstance(back.repeats[0], RepeatRecord) and isinstance(back.gate[0], GateRow)
        assert isinstance(back.checks[0], CheckRecord)
        assert back.shown_status == rec.shown_status


def test_result_json_round_trip_gives_paths_back_and_drops_derived_keys(tmp_path):
    result = make_result(tmp_path, spot=True, billable_seconds=30.0, training_seconds=60.0,
                         exit_code=0, job_name="job-1")
    data = json.loads(json.dumps(result.to_json()))  # what result.json holds
    assert data["artifact_dir"] == str(tmp_path / "a")
    assert data["duration_s"] == 2.5 and data["spot_saving"] == 0.5
    back = RunResult.from_json(data)
    assert back == result
    assert all(isinstance(p, Path) for p in (back.artifact_dir, back.log_path, back.model_dir))
    assert back.duration_s == 2.5 and back.spot_saving == 0.5
    # Rebuilt containers are the result's own, not the caller's.
    data["metric_series"]["accuracy"].append(1.0)
    assert back.metric_series["accuracy"] == [0.5, 0.95]


def test_result_from_json_tolerates_new_keys_and_names_missing_ones(tmp_path):
    data = make_result(tmp_path).to_json()
    data["added_in_a_later_version"] = 1
    assert RunResult.from_json(data).status == COMPLETED
    del data["final_metrics"], data["metric_series"]  # optional: empty again
    assert RunResult.from_json(data).final_metrics == {}
    del data["status"], data["log_path"]
    with pytest.raises(ValueError, match="missing log_path, status"):
        RunResult.from_json(data)
    with pytest.raises(ValueError, match="JSON object"):
        RunResult.from_json([1, 2])
