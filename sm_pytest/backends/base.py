"""The one small interface every backend implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sm_pytest.model import RunResult
from sm_pytest.spec.experiment import RunSpec


class Handle(Protocol):
    """Whatever a backend needs to wait for or stop one submitted run."""


class Backend(Protocol):
    name: str

    def submit(self, run: RunSpec, attempt_dir: Path) -> Handle: ...

    def wait(self, handle: Handle) -> RunResult: ...

    def stop(self, handle: Handle) -> None: ...
