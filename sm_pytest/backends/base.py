"""The one small interface every backend implements, and the interface of a tracker that
a backend drives while its jobs run."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sm_pytest.model import RunResult
from sm_pytest.spec.experiment_file import RunSpec


class Handle(Protocol):
    """Whatever a backend needs to wait for or stop one submitted run."""


class Backend(Protocol):
    name: str

    def submit(self, run: RunSpec, attempt_dir: Path) -> Handle: ...

    def wait(self, handle: Handle) -> RunResult: ...

    def stop(self, handle: Handle) -> None: ...


class JobTracker(Protocol):
    """A tracker that a remote job logs into while it runs (SageMaker Experiments): its run
    is started before the job, and the job request carries what start_run returns (the
    ExperimentConfig); finish_run sets the run's status from the job's result. Trackers of
    finished items (the local store, MLflow) are store.tracker.Tracker instead."""

    def start_run(self, run: RunSpec, job_name: str) -> dict: ...

    def finish_run(self, run: RunSpec, result: RunResult) -> None: ...

    def record_trial(self, run: RunSpec, result: RunResult) -> None:
        """A tuning job's trial, which the service launched (no ExperimentConfig): its run
        made and finished at once, from the trial's result."""
        ...
