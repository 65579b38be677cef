"""Sessions that end cleanly: SIGTERM and SIGHUP take Ctrl-C's path, training dies with
pytest even under SIGKILL, and an interrupted run keeps its log, result and rows. Each test
starts pytest as a real process and signals it, as a CI runner cancelling a job does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from conftest import SM, needs_emulator, process_alive

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


# descendants() and _cmdline() read Linux's /proc; elsewhere (macOS) the tests that need
# them are skipped rather than passing without looking.
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")


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


def wait_gone(pids: set[int], within: float = 10.0) -> set[int]:
    """The pids still alive after `within` seconds (a generous bound, not a measurement)."""
    deadline = time.time() + within
    while time.time() < deadline and any(process_alive(pid) for pid in pids):
        time.sleep(0.05)
    return {pid for pid in pids if process_alive(pid)}


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


@needs_proc
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
    assert (f"! sm_pytest.model.RunInterrupted: the session was interrupted"
            f" ({sig.name})") in output
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["interrupted"] and list(summary["verdict"]) == ["error"]
    from sm_pytest.store.tracking import runs_frame

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
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM,
                                                     signal.SIGHUP)}
    project.run().assert_outcomes(passed=1)  # in this process
    assert {sig: signal.getsignal(sig) for sig in before} == before


@needs_proc
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


@needs_proc
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


@needs_proc
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
    from sm_pytest.store.tracking import runs_frame

    assert list(runs_frame(project.artifacts / "tracking.sqlite")["status"]) == ["stopped"]


@needs_proc
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
    from sm_pytest.store.tracking import runs_frame

    runs = runs_frame(project.artifacts / "tracking.sqlite")
    assert list(runs["repeat_index"]) == [1, 2]
    assert list(runs["status"]) == ["completed", "failed"]
    assert runs["accuracy"].iloc[0] == 0.97  # the finished run's result is kept
    first = project.artifacts / "consuming" / "default-repeat1" / "attempt-0001"
    assert json.loads((first / "result.json").read_text())["status"] == "completed"


# -- a signal between the waiting and the keeping loses nothing --------------------------------

# A project conftest that sends pytest a signal (SIGTERM unless told) from inside
# `module.attribute` (its nth call), so that it lands exactly there, as it can by chance.
SIGNAL_INSIDE = textwrap.dedent("""
    import importlib, os, signal

    target = importlib.import_module({module!r})
    owner = getattr(target, {owner!r}) if {owner!r} else target
    original = getattr(owner, {attribute!r})
    calls = []

    def landing(*args, **kwargs):
        calls.append(True)
        if len(calls) == {nth}:
            os.kill(os.getpid(), signal.{sig})
        return original(*args, **kwargs)

    setattr(owner, {attribute!r}, landing)
""")


def signal_inside(project, module: str, attribute: str, owner: str = "",
                  sig: str = "SIGTERM", nth: int = 1, more: str = "") -> None:
    (project.root / "conftest.py").write_text(SIGNAL_INSIDE.format(
        module=module, owner=owner, attribute=attribute, sig=sig, nth=nth) + more)


def runs_in_store(project) -> pd.DataFrame:
    from sm_pytest.store.tracking import runs_frame

    return runs_frame(project.artifacts / "tracking.sqlite")


PASSES = "base: config/base.yaml\nexpect: {accuracy: '>= 0.9'}\n"


@pytest.mark.parametrize("module, owner, attribute, sig", [
    ("sm_pytest.run.contract", "ContainerTree", "record_exit", "SIGTERM"),  # the run is kept
    ("sm_pytest.backends.runner", "", "save", "SIGTERM"),  # its result is written
    ("sm_pytest.backends.runner", "", "save", "SIGINT"),  # Ctrl-C
    ("sm_pytest.gating.checks", "", "judge", "SIGTERM"),  # it is judged
    ("sm_pytest.session", "SmSession", "record", "SIGTERM"),  # it is recorded
    ("sm_pytest.store.tracking", "LocalTracker", "record", "SIGTERM"),  # its tracking row too
], ids=["record_exit", "save", "save-ctrl-c", "judge", "record", "tracker"])
def test_a_signal_after_a_local_run_finished_keeps_the_run(project, module, owner, attribute,
                                                           sig):
    signal_inside(project, module, attribute, owner, sig)
    project.experiment("short", PASSES)
    result = project.run_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    attempt = project.artifacts / "short" / "default" / "attempt-0001"
    saved = json.loads((attempt / "result.json").read_text())
    assert saved["status"] == "completed" and saved["final_metrics"]["accuracy"] == 0.97
    cause = "Ctrl-C" if sig == "SIGINT" else sig
    # The run ended as it would have (judged, passed, recorded), then the session stopped.
    result.stdout.fnmatch_lines([
        "*= sm-pytest runs =*",
        f"*KeyboardInterrupt: the session was interrupted ({cause}); every run that"
        " finished is kept*",
        "*= 1 passed in *"])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["completed"] and list(summary["verdict"]) == ["pass"]
    runs = runs_in_store(project)
    assert list(runs["status"]) == ["completed"] and list(runs["accuracy"]) == [0.97]


@pytest.mark.parametrize("module, owner, attribute", [
    ("sm_pytest.gating.checks", "", "judge"),  # in the worker, as its last item ends
    ("sm_pytest.session", "SmSession", "record"),  # in the controller, which passes it on
], ids=["worker", "controller"])
def test_a_signal_noted_under_xdist_still_interrupts_the_session(project, module, owner,
                                                                 attribute):
    pytest.importorskip("xdist")
    signal_inside(project, module, attribute, owner)
    project.experiment("short", PASSES)
    result = project.run_subprocess("-n", "1", "--sm-save-baseline", "main")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    # Interrupted: a refresh is all or nothing, so no baseline; the run keeps its rows.
    assert not (project.root / "baselines" / "main.json").exists(), result.stdout.str()
    result.stdout.fnmatch_lines(["*baseline 'main' not saved: the session was interrupted*"])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["completed"] and list(summary["verdict"]) == ["pass"]
    assert list(runs_in_store(project)["status"]) == ["completed"]


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_a_signal_as_a_repeat_ends_starts_no_other_and_judges_none(project, xdist):
    args = ("-n", "1") if xdist else ()
    if xdist:
        pytest.importorskip("xdist")
    signal_inside(project, "sm_pytest.backends.runner", "save")
    project.experiment("thrice", "base: config/base.yaml\nrepeat: 3\n"
                                 "expect: {accuracy: '>= 0.9'}\n")
    result = project.run_subprocess(*args)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    first = project.artifacts / "thrice" / "default-repeat1" / "attempt-0001"
    assert json.loads((first / "result.json").read_text())["status"] == "completed"
    assert not (project.artifacts / "thrice" / "default-repeat2").exists()
    # One repeat of three is no verdict: the item is an error, not a pass.
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*interrupted (SIGTERM) after 1 of 3 repeats*"])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["interrupted"] and list(summary["verdict"]) == ["error"]
    runs = runs_in_store(project)  # the one repeat that ran, as the item's row
    assert list(runs["verdict"]) == ["error"] and list(runs["accuracy"]) == [0.97]


def test_a_signal_while_a_run_is_set_up_starts_no_process(project):
    # The container tree is being prepared (sources copied): nothing has started yet.
    signal_inside(project, "sm_pytest.run.contract", "prepare_container_tree")
    project.experiment("short", PASSES)
    result = project.run_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert not (project.artifacts / "short" / "default" / "attempt-0001").exists()
    assert not (project.artifacts / "summary.csv").exists(), result.stdout.str()  # no row


def test_a_signal_while_a_later_repeat_is_set_up_keeps_the_earlier_one(project):
    signal_inside(project, "sm_pytest.run.contract", "prepare_container_tree", nth=2)
    project.experiment("twice", "base: config/base.yaml\nrepeat: 2\n"
                                "expect: {accuracy: '>= 0.9'}\n")
    result = project.run_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*interrupted (SIGTERM) after 1 of 2 repeats*"])
    assert not (project.artifacts / "twice" / "default-repeat2" / "attempt-0001").exists()
    runs = runs_in_store(project)
    assert list(runs["verdict"]) == ["error"] and list(runs["accuracy"]) == [0.97]


# A conftest that makes preparing a run slow (hashing a large data set, say).
SLOW_PREPARATION = textwrap.dedent("""
    import pathlib, time
    import sm_pytest.session

    original = sm_pytest.session.SmSession.fingerprint

    def fingerprint(self, run):
        (pathlib.Path(__file__).parent / "preparing").write_text("preparing")
        time.sleep(120)
        return original(self, run)

    sm_pytest.session.SmSession.fingerprint = fingerprint
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_one_signal_stops_a_slow_preparation_at_once(project, start, xdist, sig):
    if xdist:
        pytest.importorskip("xdist")
    (project.root / "conftest.py").write_text(SLOW_PREPARATION)
    project.experiment("prepared", "base: config/base.yaml\n")
    process = start(*(("-n", "1") if xdist else ()))
    wait_for_line(project.root / "preparing", "preparing")
    process.send_signal(sig)
    output, _ = process.communicate(timeout=60)  # the preparation alone would take 120 s
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert not (project.artifacts / "prepared").exists(), output  # nothing trained


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


# A conftest whose session ending takes two minutes (a slow upload, say).
SLOW_ENDING = textwrap.dedent("""
    import pathlib, time

    def pytest_sessionfinish(session):
        pathlib.Path("ending").write_text("ending")
        time.sleep(120)
        pathlib.Path("ended").write_text("ended")
""")


@needs_proc
@pytest.mark.parametrize("began", ["not", "SIGTERM", "SIGINT", "noted"])
def test_the_second_signal_stops_the_session_at_once_however_the_first_came(project, start,
                                                                          began):
    # The first signal stops the session at the next safe point; the one after it stops it
    # at once, the same whichever way the first came (CI sends SIGINT, then SIGTERM).
    if began == "noted":  # while the run was saved: the session ends after it
        signal_inside(project, "sm_pytest.backends.runner", "save", more=SLOW_ENDING)
    else:
        (project.root / "conftest.py").write_text(SLOW_ENDING)
    if began in ("SIGTERM", "SIGINT"):  # during the run
        attempt = local_project(project)
    else:
        project.experiment("short", "base: config/base.yaml\n")
    process = start()
    if began in ("SIGTERM", "SIGINT"):
        wait_for_line(attempt / "train.log", "ready")
        process.send_signal(getattr(signal, began))
    wait_for_line(project.root / "ending", "ending")
    if began == "not":
        # The session ended by itself: the first signal is only noted, the ending goes on.
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)  # well before the 120 s the ending takes
    assert not (project.root / "ended").exists(), output


def test_a_process_that_cannot_be_reaped_does_not_hang_the_session(project):
    # A process stuck in the kernel (a GPU driver or NFS hang) outlives SIGKILL; simulated
    # here by signals that do nothing. The run is reported, and the session goes on.
    (project.root / "conftest.py").write_text(textwrap.dedent("""
        import os
        import sm_pytest.backends.local
        import sm_pytest.run.processes as processes

        def unkillable(*args):
            pass

        def no_watchdog(group):
            raise OSError("no watchdog")

        processes.REAP_S = 1.0
        processes.Watchdog = no_watchdog
        os.killpg = unkillable
        sm_pytest.backends.local.TERMINATE_GRACE_S = 0.2
    """))
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import os, time
        open("train.pid", "w").write(str(os.getpid()))
        print("epoch=1 loss=0.5000 accuracy=0.9100", flush=True)
        time.sleep(300)
    """))
    project.experiment("stuck", "base: config/base.yaml\nmax_run: 2\n")
    try:
        result = project.run_subprocess()
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*did not exit within 1 s of SIGKILL*left behind*"])
        summary = pd.read_csv(project.artifacts / "summary.csv")
        assert list(summary["status"]) == ["timed_out"], result.stdout.str()
    finally:
        pid_files = list(project.root.rglob("train.pid"))
        for pid_file in pid_files:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert pid_files  # the script did run, and was left for this test to end


def test_a_session_with_many_open_files_waits_for_its_runs(project):
    # Descriptors numbered past 1024 (a big DataLoader, many sockets): select() refuses
    # them, poll() does not.
    (project.root / "conftest.py").write_text(textwrap.dedent("""
        import os, resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1400 and (hard == resource.RLIM_INFINITY or hard >= 1400):
            resource.setrlimit(resource.RLIMIT_NOFILE, (1400, hard))
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    """))
    resource = pytest.importorskip("resource")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip("cannot open 1100 files here")
    project.experiment("short", PASSES)
    project.run_subprocess().assert_outcomes(passed=1)


@pytest.mark.parametrize("stop", ["-x", "--maxfail=1"])
def test_a_stop_on_the_last_item_still_saves_the_baseline(project, stop):
    # -x reached on the last item left nothing unrun: the refresh is whole.
    project.experiment("a_passes", PASSES)
    project.experiment("b_fails", "base: config/base.yaml\nexpect: {accuracy: '>= 0.99'}\n")
    result = project.run_subprocess(stop, "--sm-save-baseline", "main")
    result.assert_outcomes(passed=1, failed=1)
    saved = json.loads((project.root / "baselines" / "main.json").read_text())
    assert "a_passes" in json.dumps(saved) and "b_fails" not in json.dumps(saved), saved
