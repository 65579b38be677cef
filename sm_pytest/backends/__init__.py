"""Backends run a RunSpec somewhere and give back a RunResult (see base.py)."""

from .base import COMPLETED, FAILED, STOPPED, TIMED_OUT, Backend, RunResult

__all__ = ["COMPLETED", "FAILED", "STOPPED", "TIMED_OUT", "Backend", "RunResult"]
