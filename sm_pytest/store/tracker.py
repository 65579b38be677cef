"""The one small interface of a tracker that records finished items: the embedded store
(tracking.LocalTracker) and MLflow (mlflow_tracking.MlflowTracker).

It is called on the controller, once per item, with the item's RunRecord, after the
attempt folders are written: a tracker that fails costs no result. SageMaker Experiments is
the other kind: its Run must exist before the job starts, because the job request names it
(ExperimentConfig) and the job logs into it, so the SageMaker backend drives it, through
backends.base.JobTracker, and it does not record finished items here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sm_pytest.model import RunRecord


@runtime_checkable
class Tracker(Protocol):
    def record(self, rec: RunRecord) -> None:
        """Keep one finished item: its runs (one per repeat), their params and series."""
        ...

    def close(self, *, interrupted: bool) -> list[str]:
        """The session has ended (`interrupted`: by Ctrl-C or a signal): finish what is
        open. Returns the lines to print after the summary table."""
        ...
