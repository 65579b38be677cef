"""What the benchmarks share: a throw-away project (a trivial training script and experiment
files), timing, the machine's load while a run was measured, a free port, and the epoch
line of src/train.py."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL_TRAIN = """
import os
print("epoch=1 accuracy=0.99", flush=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write("ok")
"""
# src/train.py's per-epoch line: epoch, final test accuracy, samples/s.
EPOCH_LINE = re.compile(r"^epoch=(\d+) .*test_accuracy=(\S+) .*samples_per_second=(\S+)", re.M)
CONFIG = """
source_dir: src
inputs: {training: data}
metric_definitions:
  - {Name: accuracy, Regex: 'accuracy=([0-9.]+)'}
"""


def make_project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="sm-pytest-bench-"))
    (root / "src").mkdir()
    (root / "src" / "train.py").write_text(TRIVIAL_TRAIN)
    (root / "data").mkdir()
    (root / "data" / "sample.txt").write_text("data")
    (root / "config").mkdir()
    (root / "config" / "base.yaml").write_text(CONFIG)
    (root / "experiments").mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


ROOT = Path(__file__).resolve().parents[1]


def make_mnist_project() -> Path:
    """A throw-away copy of this project's training code and config, with the MNIST
    sample linked in, and no experiments yet."""
    root = Path(tempfile.mkdtemp(prefix="sm-pytest-mnist-"))
    for name in ("src", "config"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "data").mkdir()
    (root / "data" / "mnist-sample").symlink_to(ROOT / "data" / "mnist-sample")
    (root / "experiments").mkdir()
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def write_experiment(root: Path, name: str, body: str) -> None:
    (root / "experiments" / f"{name}.yaml").write_text(body)


def timed(command: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if completed.returncode not in (0, 5):
        sys.exit(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")
    return elapsed


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (/proc/stat, steal included), None
    off Linux. With the children's CPU time it tells how much of a run's wall time other
    processes took (the other engineers' tests on a shared VM)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def other_load(busy: float | None, busy_after: float | None, ours: float, wall: float
               ) -> float | None:
    """The share of the CPUs that processes other than ours used during `wall` seconds,
    from busy_seconds() before and after and our children's CPU seconds meanwhile."""
    if busy is None or busy_after is None:
        return None
    return max(0.0, (busy_after - busy) - ours) / (wall * (os.cpu_count() or 1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
