"""Shared scaffolding: a throw-away project laid out like a user's, driven through pytester."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# Kept literal: importing sm_pytest.backends.sagemaker_session here would cost every test
# its imports.
REFUSED_NOTICE = "the emulator refused"

# An emulated SageMaker session, and the mark of tests that need one. Looked up, not
# imported: importing the SDK inside a test that uses pytester broke the in-process pytester
# runs after it (package metadata was no longer found).
SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")
needs_emulator = pytest.mark.skipif(
    importlib.util.find_spec("moto") is None or importlib.util.find_spec("sagemaker") is None,
    reason="needs the emulate extra (moto, sagemaker-core)")

pytest_plugins = ["pytester"]

# A stand-in for a real training script: it follows the container contract (SM_* paths,
# --key value hyperparameters) and prints metric lines, but trains nothing, so it is fast.
FAKE_TRAIN = '''
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--accuracy", type=float, default=0.97)
parser.add_argument("--loss", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--crash", default="")
args, _ = parser.parse_known_args()
print("starting", sys.argv[1:], flush=True)
for epoch in range(1, args.epochs + 1):
    late = args.epochs - epoch
    print(f"epoch={epoch} loss={args.loss * (late + 1):.4f} "
          f"accuracy={args.accuracy - 0.01 * late:.4f}", flush=True)
time.sleep(args.sleep)
if args.crash:
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as failure:
        failure.write(args.crash)
    sys.exit(3)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as model:
    model.write("trained")
'''

BASE_CONFIG = """
source_dir: src
entry_point: train.py
inputs:
  training: data
hyperparameters:
  epochs: 2
max_run: 60
metric_definitions:
  - {Name: loss, Regex: 'loss=([0-9.]+)'}
  - {Name: accuracy, Regex: 'accuracy=([0-9.]+)'}
"""


# The outer test session has imported sm_pytest already; pytester's inner sessions would warn.
INI = "[pytest]\nfilterwarnings = ignore::pytest.PytestAssertRewriteWarning\n"


class Project:
    """A user's repository in pytester's temporary folder."""

    def __init__(self, pytester: pytest.Pytester):
        self.pytester = pytester
        self.root = pytester.path
        (self.root / "src").mkdir()
        (self.root / "src" / "train.py").write_text(FAKE_TRAIN)
        (self.root / "data").mkdir()
        (self.root / "data" / "sample.txt").write_text("data")
        (self.root / "config").mkdir()
        (self.root / "config" / "base.yaml").write_text(BASE_CONFIG)
        (self.root / "experiments").mkdir()
        pytester.makeini(INI)

    def experiment(self, name: str, body: str) -> None:
        (self.root / "experiments" / f"{name}.yaml").write_text(textwrap.dedent(body))

    def run(self, *args: str, refusals: bool = False) -> pytest.RunResult:
        result = self.pytester.runpytest("experiments", "-p", "no:cacheprovider", *args)
        return _no_refusals(result, refusals)

    def run_subprocess(self, *args: str, refusals: bool = False) -> pytest.RunResult:
        result = self.pytester.runpytest_subprocess("experiments", "-p", "no:cacheprovider",
                                                    *args)
        return _no_refusals(result, refusals)

    @property
    def artifacts(self):
        return self.root / "sm-artifacts"


def _no_refusals(result: pytest.RunResult, allowed: bool) -> pytest.RunResult:
    """Every emulated session is a check of sm-pytest's own requests: one that AWS would
    refuse fails the test even where the plugin tolerates the error (Experiments logging).
    Under -n too: the workers' notices reach the controller's output (test_xdist_notices)."""
    if not allowed:
        refused = [line for line in result.outlines if REFUSED_NOTICE in line]
        assert not refused, "\n".join(result.outlines)
    return result


def signal_pytest_when(root: Path, args: list[str], log: Path, text: str, *,
                       sig: int = signal.SIGINT, timeout: float = 60.0) -> tuple[int, str]:
    """`pytest experiments ARGS` in `root` as a process of its own, sent `sig` once `text`
    is in `log`: its exit code and whole output. Killed if the test fails first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", *args],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not (log.exists() and text in log.read_text(errors="replace")):
            assert time.monotonic() < deadline and process.poll() is None, (
                f"{text!r} never appeared in {log}")
            time.sleep(0.1)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, output


def process_alive(pid: int) -> bool:
    """Running (a zombie is not); without /proc (macOS), whether signal 0 reaches it."""
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    return Project(pytester)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def mnist_project(project: Project) -> Project:
    """The project with this repository's real train.py, config/mnist.yaml and the MNIST
    sample, for the tests that really train."""
    shutil.rmtree(project.root / "src")
    shutil.copytree(REPO / "src", project.root / "src",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "config" / "mnist.yaml", project.root / "config" / "mnist.yaml")
    (project.root / "data" / "mnist-sample").symlink_to(REPO / "data" / "mnist-sample")
    return project
