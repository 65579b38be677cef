"""One run from RunSpec to a RunResult on disk: attempt folder, backend, result files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sm_pytest.backends.base import Backend
from sm_pytest.model import RunInterrupted, RunResult
from sm_pytest.run import signals
from sm_pytest.run.artifacts import new_attempt_dir, write_json_atomic, write_text_atomic
from sm_pytest.spec.experiment_file import RunSpec


def submit(run: RunSpec, backend: Backend, artifacts_root: Path):
    """Start a run in a fresh attempt folder; returns the backend's handle."""
    attempt_dir = new_attempt_dir(artifacts_root, run.experiment, run.folder)
    return backend.submit(run, attempt_dir)


def finish(backend: Backend, handle) -> RunResult:
    """Wait for a submitted run and save what it produced, also when the session is
    interrupted while it runs (its log so far, as INTERRUPTED). A first signal while it is
    saved waits for the save (signals.py)."""
    try:
        result = backend.wait(handle)
    except RunInterrupted as exc:
        with signals.deferred():
            save(exc.result)
        raise
    with signals.deferred():
        save(result)
    return result


def save(result: RunResult) -> None:
    """Write what a run produced, before anything can judge it, so no result is lost."""
    if result.failure_reason:
        write_text_atomic(result.artifact_dir / "failure", result.failure_reason + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["metric", "step", "value"])
    for name, values in result.metric_series.items():
        writer.writerows([name, step, value] for step, value in enumerate(values))
    write_text_atomic(result.artifact_dir / "metrics.csv", buffer.getvalue())
    write_json_atomic(result.artifact_dir / "result.json", result.to_json())
