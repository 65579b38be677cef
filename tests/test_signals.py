"""Sessions that end cleanly: SIGTERM and SIGHUP take Ctrl-C's path, training dies with
pytest even under SIGKILL, and an interrupted run keeps its log, result and rows. Each test
starts pytest as a real process and signals it, as a CI runner cancelling a job does."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

# Prints a metric line, starts a child of its own (a DataLoader worker, say), then trains
# "forever". Both are in the run's process group.
LONG_TRAIN = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print("epoch=1 loss=0.5000 accuracy=0.9100", flush=True)
    print("ready", flush=True)
    time.sleep(300)
""")
LONG = """
    base: config/base.yaml
    max_run: 600
    expect: {accuracy: ">= 0.9"}
"""
SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")
# Looked up, not imported: importing the SDK inside a test that uses pytester broke the
# in-process pytester runs after it (package metadata was no longer found).
needs_emulator = pytest.mark.skipif(
    importlib.util.find_spec("moto") is None or importlib.util.find_spec("sagemaker") is None,
    reason="needs the emulate extra (moto, sagemaker-core)")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X"):
                parents[int(entry)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_gone(pids: set[int], within: float = 10.0) -> set[int]:
    """The pids still alive after `within` seconds (a generous bound, not a measurement)."""
    deadline = time.time() + within
    while time.time() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return {pid for pid in pids if alive(pid)}


@pytest.fixture
def start(project):
    """Start pytest in the project as a process of its own; killed if a test fails early."""
    started = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", *args],
            cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for_line(path, text: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


def local_project(project):
    (project.root / "src" / "train.py").write_text(LONG_TRAIN)
    project.experiment("long", LONG)
    return project.artifacts / "long" / "default" / "attempt-0001"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_during_a_local_run_ends_like_ctrl_c(project, start, sig):
    attempt = local_project(project)
    process = start()
    wait_for_line(attempt / "train.log", "ready")
    training = descendants(process.pid)
    assert len(training) >= 2, training  # the script and its child (and the watchdog)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert wait_gone(training) == set(), output
    # Evidence: the log so far, the result, and its rows in the summary and the store.
    assert "epoch=1 loss=0.5000" in (attempt / "train.log").read_text()
    result = json.loads((attempt / "result.json").read_text())
    assert result["status"] == "interrupted"
    assert f"interrupted ({sig.name})" in result["failure_reason"]
    assert result["final_metrics"] == {"loss": 0.5, "accuracy": 0.91}
    assert "= sm-pytest runs =" in output and "interrupted" in output, output
    # pytest's own interrupted path, which names the signal
    assert (f"! sm_pytest.backends.base.RunInterrupted: the session was interrupted"
            f" ({sig.name})") in output
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["interrupted"] and list(summary["verdict"]) == ["error"]
    from sm_pytest.tracking import runs_frame

    runs = runs_frame(project.artifacts / "tracking.sqlite")
    assert list(runs["status"]) == ["interrupted"] and list(runs["accuracy"]) == [0.91]


def test_sighup_ignored_by_whoever_started_pytest_stays_ignored(project):
    # nohup pytest ...: a closed terminal must not end the session.
    project.experiment("short", """
        base: config/base.yaml
        hyperparameters: {sleep: 2}
        expect: {accuracy: ">= 0.9"}
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for_line(project.artifacts / "short" / "default" / "attempt-0001" / "train.log",
                  "epoch=2")
    process.send_signal(signal.SIGHUP)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == pytest.ExitCode.OK, output


def test_the_handlers_are_restored_when_the_session_ends(project):
    project.experiment("short", "base: config/base.yaml\n")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    project.run().assert_outcomes(passed=1)  # in this process
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_sigkill_of_pytest_takes_the_training_processes_with_it(project, start):
    attempt = local_project(project)
    process = start()
    wait_for_line(attempt / "train.log", "ready")
    training = descendants(process.pid)
    assert len(training) >= 2, training
    process.kill()
    process.communicate(timeout=30)
    assert wait_gone(training) == set()


def test_sigterm_under_xdist_interrupts_every_worker_and_keeps_their_rows(project, start):
    pytest.importorskip("xdist")
    (project.root / "src" / "train.py").write_text(LONG_TRAIN)
    project.experiment("long", LONG + "    matrix: {seed: [1, 2]}\n")
    process = start("-n", "2")
    for seed in (1, 2):
        wait_for_line(project.artifacts / "long" / f"seed={seed}" / "attempt-0001"
                      / "train.log", "ready")
    training = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert wait_gone(training) == set(), output
    # Each worker reported its item as an error and stopped; none was taken for a crash
    # (xdist would have reported a crash and started a replacement worker).
    assert "Interrupted: interrupted (SIGTERM)" in output and "crashed" not in output, output
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert sorted(summary["run"]) == ["seed=1", "seed=2"], output
    assert set(summary["status"]) == {"interrupted"}


@needs_emulator
def test_sigterm_during_an_emulated_sagemaker_run_stops_the_job(project, start):
    (project.root / "src" / "train.py").write_text(LONG_TRAIN)
    project.experiment("slow", LONG)
    process = start(*SM)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if ": InProgress" in line:
            break
    deadline = time.time() + 60
    training: set[int] = set()
    while time.time() < deadline and len(training) < 2:  # the job's script and its child
        training = {pid for pid in descendants(process.pid)
                    if "sleep(300)" in _cmdline(pid) or "train.py" in _cmdline(pid)}
        time.sleep(0.2)
    assert len(training) >= 2, training
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=90)
    output = "".join(lines) + rest
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "stopped SageMaker jobs on interrupt: slow-" in output, output
    assert wait_gone(training) == set(), output
    attempt = project.artifacts / "slow" / "default" / "attempt-0001"
    assert json.loads((attempt / "result.json").read_text())["status"] == "stopped"
    assert "ready" in (attempt / "train.log").read_text()
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["stopped"], output
    assert summary.loc[0, "job"].startswith("slow-")
    from sm_pytest.tracking import runs_frame

    assert list(runs_frame(project.artifacts / "tracking.sqlite")["status"]) == ["stopped"]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# -- review findings: only what should run is launched, and no result is thrown away ---------

@needs_emulator
def test_skipped_runs_are_never_launched_on_sagemaker(project):
    (project.root / "conftest.py").write_text(textwrap.dedent("""
        import sys
        import pytest

        def pytest_collection_modifyitems(items):
            marks = {"off": pytest.mark.skip(reason="switched off"),
                     "elsewhere": pytest.mark.skipif("sys.platform != 'plan9'",
                                                     reason="Plan 9 only"),
                     "gpu_only": pytest.mark.skipif(True, reason="no GPU here"),
                     "kept": pytest.mark.skipif(False, reason="never")}
            for item in items:
                if item.name in marks:
                    item.add_marker(marks[item.name])

        def pytest_runtest_setup(item):
            if item.name == "late":  # known only once its setup runs: launched, then stopped
                pytest.skip("decided in setup")
    """))
    for name in ("off", "elsewhere", "gpu_only", "kept", "late"):
        sleep = 30 if name == "late" else 0
        project.experiment(name, f"base: config/base.yaml\nhyperparameters: {{sleep: {sleep}}}\n"
                                 "expect: {accuracy: '>= 0.9'}\n")
    result = project.run_subprocess(*SM)
    result.assert_outcomes(passed=1, skipped=4)
    launched = sorted(line.split("launched (")[1].split(",")[0]
                      for line in result.stdout.lines if ": launched (" in line)
    assert launched == ["kept", "late"], result.stdout.str()
    result.stdout.fnmatch_lines(["stopped SageMaker jobs that were still running: late-*"])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["experiment"]) == ["kept"]  # a skipped run has no row


def test_a_repeat_that_cannot_start_keeps_the_results_of_those_before_it(project):
    # The first run consumes its input folder, so the second cannot be prepared.
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import os, shutil
        print("epoch=1 loss=0.1000 accuracy=0.9700", flush=True)
        shutil.rmtree(os.path.realpath(os.environ["SM_CHANNEL_TRAINING"]))
    """))
    project.experiment("consuming", """
        base: config/base.yaml
        hyperparameters: {seed: 1}
        repeat: 2
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*consuming: the run failed and produced no verdict",
                                 "*channel 'training'*does not exist*"])
    from sm_pytest.tracking import runs_frame

    runs = runs_frame(project.artifacts / "tracking.sqlite")
    assert list(runs["repeat_index"]) == [1, 2]
    assert list(runs["status"]) == ["completed", "failed"]
    assert runs["accuracy"].iloc[0] == 0.97  # the finished run's result is kept
    first = project.artifacts / "consuming" / "default-repeat1" / "attempt-0001"
    assert json.loads((first / "result.json").read_text())["status"] == "completed"
