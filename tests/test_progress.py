"""Live progress: while a run trains, one line per new metric value set, prefixed with the
run id, printed without -s, rate-limited, quieted by -q; locally and on (emulated)
SageMaker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import SM, needs_emulator
from sm_pytest.run.progress import Progress
from sm_pytest.spec.metrics import MetricDefinition

EXPERIMENT = """
    base: config/base.yaml
    hyperparameters: {epochs: 3}
    expect: {accuracy: ">= 0.9"}
"""
# "(0 s)": elapsed seconds, whatever they are.
LINE = re.compile(r"^baseline: epoch (\d+)  accuracy=([0-9.]+)  loss=([0-9.]+)  \(\d+ s\)$")


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


# Prints its first epoch, then waits for the test to let it go on: a progress line seen
# before then was printed while the run trained, not when it ended.
WAITING_TRAIN = textwrap.dedent("""
    import os, time
    print("epoch=1 loss=0.3000 accuracy=0.9100", flush=True)
    go = os.path.join(os.environ["GO_DIR"], "go")
    while not os.path.exists(go):
        time.sleep(0.05)
    print("epoch=2 loss=0.1000 accuracy=0.9700", flush=True)
""")


def test_a_local_progress_line_appears_while_the_run_trains(project, tmp_path):
    (project.root / "src" / "train.py").write_text(WAITING_TRAIN)
    project.experiment("baseline", EXPERIMENT)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GO_DIR": str(tmp_path)})
    try:
        seen = []
        for line in process.stdout:
            seen.append(line.rstrip("\n"))
            if LINE.match(seen[-1]):
                break
        assert LINE.match(seen[-1]).group(1, 2, 3) == ("1", "0.91", "0.3"), seen
        assert process.poll() is None  # still training: the script waits for "go"
        # On a line of its own, right after the file's name: no blank line before it.
        assert seen[-2].startswith("experiments/baseline.yaml"), seen
        (tmp_path / "go").write_text("")
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, rest
    lines = progress_lines(rest)
    assert [m.group(1) for m in lines] == ["2"], rest  # the last value set, at the end


def test_xdist_workers_print_no_progress_lines(project):
    pytest.importorskip("xdist")
    project.experiment("baseline", EXPERIMENT)
    result = project.run_subprocess("-n", "1")
    result.assert_outcomes(passed=1)
    assert progress_lines(result.stdout.str()) == []
    assert "baseline: epoch" not in result.stdout.str()


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


def test_live_sagemaker_progress_outlasts_throttling_and_ends_only_when_denied(tmp_path):
    pytest.importorskip("moto")
    pytest.importorskip("sagemaker.core")
    from types import SimpleNamespace

    from botocore.exceptions import ClientError

    from sm_pytest.backends.sagemaker import SageMakerBackend
    from sm_pytest.sagemaker.cloudwatch import LOG_GROUP
    from sm_pytest.sagemaker.emulator.service import Emulator

    run = SimpleNamespace(name="baseline", trial_index=None,
                          expect=[SimpleNamespace(metric="accuracy")],
                          metric_definitions=[MetricDefinition("loss", r"loss=([0-9.]+)"),
                                              MetricDefinition("accuracy",
                                                               r"accuracy=([0-9.]+)")])
    failing: list[str] = []  # error codes the next DescribeLogStreams calls answer

    def answer(**kwargs):
        if failing:
            code = failing.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, "DescribeLogStreams")

    printed: list[str] = []
    with Emulator():
        backend = SageMakerBackend(settings_for=lambda run: None, region="us-east-1",
                                   max_parallel=1, token="t", progress=printed.append)
        try:
            logs = backend.logs
            logs.meta.events.register("before-call.cloudwatch-logs.DescribeLogStreams", answer)
            logs.create_log_group(logGroupName=LOG_GROUP)
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="job-1/algo-1-1")
            logs.put_log_events(logGroupName=LOG_GROUP, logStreamName="job-1/algo-1-1",
                                logEvents=[{"timestamp": int(time.time() * 1000), "message":
                                            "epoch=1 loss=0.3000 accuracy=0.9100"}])
            handle = SimpleNamespace(job_name="job-1", run=run, live=None)
            failing += ["ThrottlingException"] * 8 + ["ServiceUnavailableException"] * 2
            for _ in range(10):  # throttled, then a passing outage: skipped, never given up
                backend.follow_log(handle, ended=False)
            backend.follow_log(handle, ended=False)
            assert [line for line in printed if LINE.match(line.rstrip("\n"))], printed
            assert not [line for line in printed if "no live progress" in line], printed
            failing.append("AccessDeniedException")
            backend.follow_log(handle, ended=False)
            backend.follow_log(handle, ended=False)
            denied = [line for line in printed if "no live progress" in line]
            assert len(denied) == 1 and "AccessDeniedException" in denied[0], printed
            assert handle.live == ()
        finally:
            backend.close()
