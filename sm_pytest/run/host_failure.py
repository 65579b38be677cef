"""Which host of a multi-host run failed it: one rule for the local backend and the emulator.

When one host of a distributed run crashes, the others usually fail a moment later: the
crashing script tears its process group down (src/train.py destroys it in a ``finally``)
and a survivor blocked in a collective gets gloo's "Connection closed by peer", often
before the crashing host's process has finished exiting. Blaming the first host seen to
exit would then report the survivor's symptom instead of the cause.

So, after the first failed exit, the others get a short moment (:data:`SETTLE_S`) to
finish failing, and then the host blamed is the failed one whose ``failure`` file was
written first (its mtime: the toolkit's convention is that the script writes its reason
before it exits), else the failed one seen exiting first. The other failed hosts' reasons
are listed after it ("algo-2: ...; also failed: algo-1: ...").

SageMaker does not document which instance's failure file becomes FailureReason with
several instances (your-algorithms-training-algo-output.md names one per container); this
rule is ours, chosen so that the reason is the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["SETTLE_S", "also_failed", "blame_order", "failure_mtime"]

# How long the other hosts get to finish failing after the first failed exit, before the
# run ends and the survivors are stopped. A crashing host that has written its failure file
# and destroyed its process group is normally gone well within this.
SETTLE_S = 2.0

T = TypeVar("T")


def failure_mtime(path: Path) -> float | None:
    """When the failure file was written (ns precision where the filesystem has it), or
    None when there is none."""
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


def blame_order(failed: Sequence[T], *, written_at: Callable[[T], float | None],
                seen_at: Callable[[T], float]) -> list[T]:
    """``failed`` hosts, the one to blame first: those with a failure file by when it was
    written, then those without by when they were seen exiting. ``written_at`` must be read
    before anything writes a failure file for a host (record_exit does, at reaping)."""
    def key(host: T) -> tuple[int, float, float]:
        written = written_at(host)
        if written is not None:
            return (0, written, seen_at(host))
        return (1, seen_at(host), 0.0)
    return sorted(failed, key=key)


def also_failed(reasons: Sequence[tuple[str, str]]) -> str:
    """``"; also failed: algo-1: <reason>; algo-3: <reason>"`` for the hosts after the one
    blamed (name, reason), or "" when there are none. A reason is kept to its first line: the
    blamed host's reason is the one shown whole."""
    if not reasons:
        return ""
    parts = []
    for name, reason in reasons:
        first = (reason.strip().splitlines() or [""])[0]
        parts.append(f"{name}: {first}" if first else name)
    return "; also failed: " + "; ".join(parts)
