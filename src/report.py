"""How the training script reports: log lines, UsageError, and the failure file.

Lines go to stdout (or stderr) flushed at once, so a launcher that interleaves hosts' logs
shows them in order. UsageError is a reason reported without a traceback. The failure file
is what SageMaker shows as the job's FailureReason (its first 1024 characters).
"""

from __future__ import annotations

import os
import sys


class UsageError(Exception):
    """Bad arguments or inputs: reported without a traceback."""


def log(msg, stream=None):
    print(msg, file=stream or sys.stdout, flush=True)


def write_failure(path, text, world=None, started=None):
    mode = "w"
    if world is not None and world.size > 1:
        text = f"rank {world.rank} of {world.size}: {text}"
        # Ranks of one host share its failure file; a rank that fails because a peer died
        # must not hide the reason of the rank that failed first (SageMaker shows the first
        # 1024 characters as FailureReason).
        try:
            if started is not None and os.path.getmtime(path) >= started:
                mode = "a"
        except OSError:
            pass
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(text)
    except OSError as exc:
        log(f"warning: could not write failure file {path}: {exc}", sys.stderr)
