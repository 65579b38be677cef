"""What a finished search (`tune:`) leaves for --sm-reuse: `search.json`, beside its best
trial's result.json, lists every trial (number, point, objective, where its result is), so
that an unchanged search is taken back whole, trials and all, instead of searching again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_pytest.model import RunResult, TrialSource
from sm_pytest.run.artifacts import write_json_atomic
from sm_pytest.spec.experiment_file import RunSpec

NAME = "search.json"


@dataclass
class KeptTrial:
    """A trial of an earlier search, as the records read it (model.TrialSource)."""

    number: int
    values: dict[str, Any]
    run: RunSpec
    result: RunResult | None
    objective: float | None
    stopped_early: bool


def write_search(best: RunResult, trials: Sequence[TrialSource]) -> Path:
    """search.json in the best trial's attempt folder."""
    path = Path(best.artifact_dir) / NAME
    write_json_atomic(path, {"trials": [
        {"number": t.number, "values": t.values, "objective": t.objective,
         "stopped_early": t.stopped_early,
         "result": str(Path(t.result.artifact_dir) / "result.json")}
        for t in trials if t.result is not None]})
    return path


def read_search(best_result: Path, run: RunSpec) -> list[KeptTrial] | None:
    """The trials that search.json beside `best_result` lists, or None when it, or a
    trial's result, is gone or unreadable (the search then runs again)."""
    try:
        listed = json.loads((Path(best_result).parent / NAME).read_text(encoding="utf-8"))
        trials = []
        for entry in listed["trials"]:
            result = RunResult.from_json(json.loads(Path(entry["result"]).read_text(
                encoding="utf-8")))
            trials.append(KeptTrial(int(entry["number"]), dict(entry["values"]),
                                    run.trial(int(entry["number"]), entry["values"]), result,
                                    entry["objective"], bool(entry["stopped_early"])))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        return None
    return trials
