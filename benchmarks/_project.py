"""A throw-away project for the benchmarks: a trivial training script and experiment files."""

from __future__ import annotations

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
