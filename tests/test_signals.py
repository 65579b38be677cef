"""Sessions that end cleanly: SIGTERM and SIGHUP take Ctrl-C's path, training dies with
pytest even under SIGKILL, and an interrupted run keeps its log, result and rows. Each test
starts pytest as a real process and signals it, as a CI runner cancelling a job does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from conftest import SM, needs_emulator

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
    signalled = time.monotonic()
    output, _ = process.communicate(timeout=60)
    # "Within seconds" (the run's grace is 5 s; a loaded machine gets a margin).
    assert time.monotonic() - signalled < 10, output
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
    assert_gone_within_a_second_of_sigkill(process, training)


def assert_gone_within_a_second_of_sigkill(process: subprocess.Popen, training: set[int]):
    killed = time.monotonic()
    process.kill()
    process.wait(timeout=30)
    assert wait_gone(training, within=max(0.0, 1.0 - (time.monotonic() - killed))) == set()


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
    lines: list[str] = []
    training = emulated_training(process, lines)
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


@needs_emulator
def test_sigkill_of_pytest_takes_an_emulated_jobs_training_with_it(project, start):
    (project.root / "src" / "train.py").write_text(LONG_TRAIN)
    project.experiment("slow", LONG)
    process = start(*SM)
    training = emulated_training(process, [])
    assert_gone_within_a_second_of_sigkill(process, training)


def emulated_training(process: subprocess.Popen, lines: list[str]) -> set[int]:
    """The pids of the emulated job's script and its child, once both run; pytest's output
    up to then goes to `lines`."""
    for line in process.stdout:
        lines.append(line)
        if ": InProgress" in line:
            break
    deadline = time.time() + 60
    training: set[int] = set()
    while time.time() < deadline and len(training) < 2:
        training = {pid for pid in descendants(process.pid)
                    if "sleep(300)" in _cmdline(pid) or "train.py" in _cmdline(pid)}
        time.sleep(0.2)
    assert len(training) >= 2, training
    return training


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


# -- a signal between the waiting and the keeping loses nothing --------------------------------

# A project conftest that sends pytest a signal (SIGTERM unless told) from inside
# `module.attribute` (its first call), so that it lands exactly there, as it can by chance.
SIGNAL_INSIDE = textwrap.dedent("""
    import importlib, os, signal

    target = importlib.import_module({module!r})
    owner = getattr(target, {owner!r}) if {owner!r} else target
    original = getattr(owner, {attribute!r})
    fired = []

    def landing(*args, **kwargs):
        if not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.{sig})
        return original(*args, **kwargs)

    setattr(owner, {attribute!r}, landing)
""")


def signal_inside(project, module: str, attribute: str, owner: str = "",
                  sig: str = "SIGTERM") -> None:
    (project.root / "conftest.py").write_text(
        SIGNAL_INSIDE.format(module=module, owner=owner, attribute=attribute, sig=sig))


@pytest.mark.parametrize("module, owner, attribute, sig", [
    ("sm_pytest.contract", "ContainerTree", "record_exit", "SIGTERM"),  # the run is kept
    ("sm_pytest.runner", "", "save", "SIGTERM"),  # its result is written
    ("sm_pytest.runner", "", "save", "SIGINT"),  # Ctrl-C
], ids=["record_exit", "save", "save-ctrl-c"])
def test_a_signal_after_a_local_run_finished_keeps_the_run(project, module, owner, attribute,
                                                           sig):
    signal_inside(project, module, attribute, owner, sig)
    project.experiment("short", "base: config/base.yaml\nexpect: {accuracy: '>= 0.9'}\n")
    result = project.run_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    attempt = project.artifacts / "short" / "default" / "attempt-0001"
    saved = json.loads((attempt / "result.json").read_text())
    assert saved["status"] == "completed" and saved["final_metrics"]["accuracy"] == 0.97
    cause = "Ctrl-C" if sig == "SIGINT" else sig
    result.stdout.fnmatch_lines(["*= sm-pytest runs =*",
                                 f"*interrupted ({cause}) as the run ended; its result is kept*"])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["completed"] and list(summary["verdict"]) == ["pass"]
    from sm_pytest.tracking import runs_frame

    runs = runs_frame(project.artifacts / "tracking.sqlite")
    assert list(runs["status"]) == ["completed"] and list(runs["accuracy"]) == [0.97]


def test_a_signal_as_a_repeat_ends_starts_no_other_repeat(project):
    signal_inside(project, "sm_pytest.runner", "save")
    project.experiment("twice", "base: config/base.yaml\nrepeat: 2\n"
                                "expect: {accuracy: '>= 0.9'}\n")
    result = project.run_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    first = project.artifacts / "twice" / "default-repeat1" / "attempt-0001"
    assert json.loads((first / "result.json").read_text())["status"] == "completed"
    assert not (project.artifacts / "twice" / "default-repeat2").exists()
    from sm_pytest.tracking import runs_frame

    runs = runs_frame(project.artifacts / "tracking.sqlite")
    assert list(runs["status"]) == ["completed"]  # the one repeat that ran


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_a_signal_while_a_run_is_prepared_starts_nothing_and_ends_the_session(project, xdist):
    args = ()
    if xdist:
        pytest.importorskip("xdist")
        args = ("-n", "1")  # the worker itself gets the signal, as the controller forwards it
    signal_inside(project, "sm_pytest.session", "fingerprint", owner="SmSession")
    project.experiment("prepared", "base: config/base.yaml\n")
    result = project.run_subprocess(*args)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert not (project.artifacts / "prepared").exists(), result.stdout.str()  # never trained
    result.stdout.fnmatch_lines(["*SIGTERM*"])  # pytest names the signal


def test_the_processes_a_finished_run_left_behind_are_ended_with_it(project):
    # A DataLoader worker or a shell's background job that outlives the script: as when a
    # container ends, it ends with the run, and the session does not wait for it.
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open("child.pid", "w").write(str(child.pid))
        print("epoch=1 loss=0.1000 accuracy=0.9700", flush=True)
    """))
    project.experiment("leaves", "base: config/base.yaml\nexpect: {accuracy: '>= 0.9'}\n")
    result = project.run_subprocess()
    result.assert_outcomes(passed=1)
    code_dir = json.loads((project.artifacts / "leaves" / "default" / "attempt-0001"
                           / "command.json").read_text())["cwd"]
    child = int((project.root / code_dir / "child.pid").read_text())
    assert wait_gone({child}, within=1.0) == set()


def test_one_signal_cannot_cut_the_ending_short_but_a_second_one_does(project, start):
    # The first signal during the ending (saving, stopping jobs, the summary) is ignored, so
    # that CI's one SIGTERM never costs the evidence; a person who insists ends it at once.
    (project.root / "conftest.py").write_text(textwrap.dedent("""
        import pathlib, time

        def pytest_sessionfinish(session):
            pathlib.Path("ending").write_text("ending")
            time.sleep(120)
            pathlib.Path("ended").write_text("ended")
    """))
    project.experiment("short", "base: config/base.yaml\n")
    process = start()
    wait_for_line(project.root / "ending", "ending")
    process.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=1.0)  # ignored: the ending goes on
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)  # well before the 120 s the ending would take
    assert not (project.root / "ended").exists()
