"""Live progress: while a run trains, one line per new metric value set, prefixed with the
run id, printed without -s, rate-limited, quieted by -q; locally and on (emulated)
SageMaker."""

from __future__ import annotations

import importlib.util
import re

import pytest

from sm_pytest.metrics import MetricDefinition
from sm_pytest.progress import Progress

EXPERIMENT = """
    base: config/base.yaml
    hyperparameters: {epochs: 3}
    expect: {accuracy: ">= 0.9"}
"""
# "(0 s)": elapsed seconds, whatever they are.
LINE = re.compile(r"^baseline: epoch (\d+)  accuracy=([0-9.]+)  loss=([0-9.]+)  \(\d+ s\)$")
SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")
needs_emulator = pytest.mark.skipif(  # looked up, not imported (see test_signals.py)
    importlib.util.find_spec("moto") is None or importlib.util.find_spec("sagemaker") is None,
    reason="needs the emulate extra (moto, sagemaker-core)")


def progress_lines(output: str) -> list[re.Match]:
    return [m for m in map(LINE.match, output.splitlines()) if m]


def test_a_local_run_shows_its_progress_without_s(project):
    project.experiment("baseline", EXPERIMENT.replace("epochs: 3", "epochs: 40"))
    result = project.run_subprocess()
    result.assert_outcomes(passed=1)
    lines = progress_lines(result.stdout.str())
    epochs = [int(m.group(1)) for m in lines]
    # Rate-limited: far fewer lines than value sets, in order, and the last one always shows.
    assert epochs == sorted(set(epochs)) and len(epochs) < 40, result.stdout.str()
    assert epochs[-1] == 40
    assert lines[-1].group(2, 3) == ("0.97", "0.1")  # the thresholds' metric first
    assert "epoch=1 loss=" not in result.stdout.str()  # the log itself is not streamed


def test_q_silences_the_progress_lines(project):
    project.experiment("baseline", EXPERIMENT)
    result = project.run_subprocess("-q")
    result.assert_outcomes(passed=1)
    assert progress_lines(result.stdout.str()) == []
    assert "baseline: epoch" not in result.stdout.str()


@needs_emulator
def test_an_emulated_sagemaker_run_shows_its_progress_from_cloudwatch(project):
    project.experiment("baseline", """
        base: config/base.yaml
        hyperparameters: {epochs: 3, sleep: 2}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(passed=1)
    output = result.stdout.str()
    lines = progress_lines(output)
    assert lines and lines[-1].group(1, 2, 3) == ("3", "0.97", "0.1"), output
    # Read while the job ran: before the line saying it completed.
    first = output.index(lines[0].group(0))
    assert first < output.index(": Completed"), output
    quiet = project.run_subprocess(*SM, "-q")
    quiet.assert_outcomes(passed=1)
    assert progress_lines(quiet.stdout.str()) == []


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_rate_limited_and_the_newest_values_win():
    clock = Clock()
    progress = Progress("sweep[lr=0.1]", [MetricDefinition("loss", r"loss=([0-9.]+)"),
                                          MetricDefinition("acc", r"acc=([0-9.]+)")],
                        show=["acc"], interval=5.0, clock=clock)
    assert progress.due() is None  # nothing matched yet
    progress.feed("starting\n")
    assert progress.due() is None
    progress.feed("epoch 1 loss=0.9 acc=0.5\n")
    assert progress.due() == "sweep[lr=0.1]: epoch 1  acc=0.5  loss=0.9  (0 s)"
    clock.now += 2
    progress.feed("epoch 2 loss=0.5 acc=0.7\n")
    assert progress.due() is None  # too soon after the last line
    clock.now += 1
    progress.feed("epoch 3 loss=0.4 acc=0.8\n")
    clock.now += 3
    assert progress.due() == "sweep[lr=0.1]: epoch 3  acc=0.8  loss=0.4  (6 s)"
    assert progress.last() is None  # shown already
    progress.feed("loss=0.3\n")  # metrics on lines of their own, without an epoch
    assert progress.last() == "sweep[lr=0.1]: epoch 3  acc=0.8  loss=0.3  (6 s)"


def test_without_an_epoch_in_the_log_value_sets_are_counted():
    progress = Progress("r", [MetricDefinition("loss", r"loss=([0-9.]+)")], interval=0.0)
    for value in ("0.9", "0.5"):
        progress.feed(f"loss={value}\n")
    assert progress.due().startswith("r: step 2  loss=0.5  (")
