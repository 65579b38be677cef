"""A local run on several hosts (`instance_count: 2`), as a user runs it: one process per
host, each with its own /opt/ml tree and log, the interleaved train.log, the merged model,
metrics from every host, and every host stopped when one fails, on max_run or on Ctrl-C."""

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

from conftest import process_alive

ATTEMPT = ("default", "attempt-0001")

# Each host says who it is; algo-2 waits for algo-1's line, so that arrival order is known.
TWO_HOSTS_FAKE = textwrap.dedent("""
    import json, os, time
    host = os.environ["SM_CURRENT_HOST"]
    hosts = json.loads(os.environ["SM_HOSTS"])
    base = os.environ["SAGEMAKER_BASE_DIR"]
    done = os.path.join(base, "..", "algo-1", "output", "data", "printed")
    if host == "algo-2":
        deadline = time.time() + 30
        while not os.path.exists(done) and time.time() < deadline:
            time.sleep(0.05)
    accuracy = {"algo-1": 0.91, "algo-2": 0.97}[host]
    print(f"host={host} of {hosts} master={os.environ['MASTER_ADDR']}:"
          f"{os.environ['MASTER_PORT']} threads={os.environ.get('OMP_NUM_THREADS')}",
          flush=True)
    print(f"epoch=1 loss=0.1 accuracy={accuracy}", flush=True)
    if host == "algo-1":
        open(done, "w").close()
    model = os.environ["SM_MODEL_DIR"]
    with open(os.path.join(model, host + ".txt"), "w") as f:
        f.write(host)
    with open(os.path.join(model, "common.txt"), "w") as f:
        f.write(host)
""")

TWO_HOSTS = """
    base: config/base.yaml
    instance_count: 2
    expect: {accuracy: ">= 0.9"}
"""

# A third-party script, unchanged from what runs on SageMaker without a distribution: every
# host starts it, and it joins the group itself with the launcher's MASTER_ADDR/MASTER_PORT.
INIT_PROCESS_GROUP = textwrap.dedent("""
    import json, os
    import torch
    import torch.distributed as dist
    hosts = json.loads(os.environ["SM_HOSTS"])
    current_host = os.environ["SM_CURRENT_HOST"]
    dist.init_process_group("gloo", init_method="env://", rank=hosts.index(current_host),
                            world_size=len(hosts))
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    print(f"rank={dist.get_rank()} world={dist.get_world_size()} sum={value.item()}",
          flush=True)
    if dist.get_rank() == 0:
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "sum.txt"), "w") as f:
            f.write(str(value.item()))
    dist.destroy_process_group()
""")

# The same under torchrun (distribution torch_distributed): torchrun gives RANK, WORLD_SIZE,
# LOCAL_RANK, and the script reads nothing else.
TORCHRUN_SCRIPT = textwrap.dedent("""
    import os
    import torch
    import torch.distributed as dist
    dist.init_process_group("gloo")
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    print(f"rank={os.environ['RANK']} world={os.environ['WORLD_SIZE']}"
          f" local={os.environ['LOCAL_RANK']} sum={value.item()}", flush=True)
    if dist.get_rank() == 0:
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "sum.txt"), "w") as f:
            f.write(str(value.item()))
    dist.destroy_process_group()
""")

SUM_METRICS = """
    base: config/base.yaml
    instance_count: 2
    max_run: 120
    metric_definitions:
      - {Name: sum, Regex: 'sum=([0-9.]+)'}
      - {Name: world, Regex: 'world=([0-9]+)'}
    expect: {sum: ">= 3", world: ">= 2"}
"""

# Each host writes its pid where the test finds it, then trains "forever"; algo-2 may crash.
SLEEPER = textwrap.dedent("""
    import os, sys, time
    host = os.environ["SM_CURRENT_HOST"]
    pids = os.path.join(os.environ["SAGEMAKER_BASE_DIR"], *[".."] * 6)
    with open(os.path.join(pids, host + ".pid"), "w") as f:
        f.write(str(os.getpid()))
    print(f"epoch=1 loss=0.5 accuracy=0.9 on {host}", flush=True)
    print("ready", flush=True)
    crash = os.environ.get("CRASH_HOST") == host
    if crash:
        time.sleep(1.0)
        print("about to fail", flush=True)
        if os.environ.get("CRASH_REASON"):
            with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
                f.write(os.environ["CRASH_REASON"])
        sys.exit(3)
    time.sleep(300)
""")


def _attempt(project, name):
    return project.artifacts / name / ATTEMPT[0] / ATTEMPT[1]


def _pids(project, within=60.0):
    deadline = time.time() + within
    files = [project.root / f"algo-{i}.pid" for i in (1, 2)]
    while time.time() < deadline and not all(f.exists() and f.read_text() for f in files):
        time.sleep(0.1)
    assert all(f.exists() for f in files), "the hosts never started"
    return [int(f.read_text()) for f in files]


def assert_gone(pids, within=15.0):
    deadline = time.time() + within
    while time.time() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if process_alive(p)], "a host process is still running"


def test_two_hosts_each_log_the_prefixed_train_log_the_merged_model_and_metrics(project):
    (project.root / "src" / "train.py").write_text(TWO_HOSTS_FAKE)
    project.experiment("pair", TWO_HOSTS)
    result = project.run()
    result.assert_outcomes(passed=1)
    attempt = _attempt(project, "pair")
    # Each host: a full tree of its own, and its own log.
    for host in ("algo-1", "algo-2"):
        tree = attempt / "hosts" / host
        config = json.loads((tree / "input" / "config" / "resourceconfig.json").read_text())
        assert config["current_host"] == host and config["hosts"] == ["algo-1", "algo-2"]
        assert (tree / "output" / "success").exists()
        log = (attempt / f"{host}.log").read_text()
        assert f"host={host} of ['algo-1', 'algo-2'] master=127.0.0.1:" in log
        other = "algo-2" if host == "algo-1" else "algo-1"
        assert f"host={other}" not in log
    # The interleaved log: every line prefixed, in arrival order.
    lines = (attempt / "train.log").read_text().splitlines()
    assert lines and all(line.startswith(("[algo-1] ", "[algo-2] ")) for line in lines)
    assert lines.index("[algo-1] epoch=1 loss=0.1 accuracy=0.91") < lines.index(
        "[algo-2] epoch=1 loss=0.1 accuracy=0.97")
    # One rendezvous for the run: the same port on both hosts.
    ports = {line.split("master=")[1].split()[0] for line in lines if "master=" in line}
    assert len(ports) == 1
    # Two hosts share the cores.
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert all(f"threads={threads}" in line for line in lines if "threads=" in line)
    # The model: both hosts' files, the later host's copy of a same-named file.
    model = attempt / "model"
    assert (model / "algo-1.txt").read_text() == "algo-1"
    assert (model / "algo-2.txt").read_text() == "algo-2"
    assert (model / "common.txt").read_text() == "algo-2"
    # Metrics from every host's lines, unprefixed, in arrival order.
    saved = json.loads((attempt / "result.json").read_text())
    assert saved["status"] == "completed"
    assert saved["metric_series"]["accuracy"] == [0.91, 0.97]
    assert saved["final_metrics"]["accuracy"] == 0.97
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["verdict"]) == ["pass"] and list(summary["accuracy"]) == [0.97]
    command = json.loads((attempt / "command.json").read_text())
    assert [h["host"] for h in command["hosts"]] == ["algo-1", "algo-2"]
    assert command["hosts"][1]["env"]["SM_CURRENT_HOST"] == "algo-2"


def test_an_unchanged_init_process_group_script_trains_on_two_hosts(project):
    (project.root / "src" / "train.py").write_text(INIT_PROCESS_GROUP)
    project.experiment("gloo", SUM_METRICS)
    result = project.run()
    result.assert_outcomes(passed=1)
    attempt = _attempt(project, "gloo")
    assert "rank=1 world=2 sum=3.0" in (attempt / "algo-2.log").read_text()
    assert "rank=0 world=2 sum=3.0" in (attempt / "algo-1.log").read_text()
    assert (attempt / "model" / "sum.txt").read_text() == "3.0"


def test_torch_distributed_runs_torchrun_on_every_host(project):
    (project.root / "src" / "train.py").write_text(TORCHRUN_SCRIPT)
    project.experiment("torchrun", SUM_METRICS + """
    distribution: {torch_distributed: {enabled: true}}
    """)
    result = project.run()
    result.assert_outcomes(passed=1)
    attempt = _attempt(project, "torchrun")
    assert "rank=0 world=2 local=0 sum=3.0" in (attempt / "algo-1.log").read_text()
    assert "rank=1 world=2 local=0 sum=3.0" in (attempt / "algo-2.log").read_text()
    command = json.loads((attempt / "command.json").read_text())["hosts"][1]["argv"]
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[command.index("--node_rank") + 1] == "1"


@pytest.mark.parametrize("own_reason", [True, False], ids=["failure-file", "exit-code"])
def test_a_host_that_crashes_fails_the_run_and_stops_the_other(project, monkeypatch,
                                                               own_reason):
    (project.root / "src" / "train.py").write_text(SLEEPER)
    monkeypatch.setenv("CRASH_HOST", "algo-2")
    if own_reason:
        monkeypatch.setenv("CRASH_REASON", "CUDA out of memory on this host")
    project.experiment("crash", TWO_HOSTS.replace("expect", "max_run: 120\n    expect"))
    started = time.time()
    result = project.run()
    assert time.time() - started < 60
    result.assert_outcomes(errors=1)
    if own_reason:
        result.stdout.fnmatch_lines(["*crash: the run failed and produced no verdict",
                                     "reason: algo-2: CUDA out of memory on this host",
                                     "(exit code 3)"])
    else:
        # No reason of its own: its exit, and the tail of its own log.
        result.stdout.fnmatch_lines(["reason: algo-2: exit code 3; the last lines of"
                                     " algo-2.log:", "*about to fail"])
    attempt = _attempt(project, "crash")
    saved = json.loads((attempt / "result.json").read_text())
    assert saved["status"] == "failed" and saved["failure_reason"].startswith("algo-2: ")
    assert saved["exit_code"] == 3
    assert_gone(_pids(project, within=1))
    assert "ready" in (attempt / "algo-1.log").read_text()


# The reviewer's race: algo-2 fails for a reason of its own, destroys the process group and
# takes 0.3 s more to exit; algo-1, blocked in all_reduce, gets gloo's "connection closed"
# and exits at once, before algo-2 is gone. The cause is algo-2's.
CRASH_IN_COLLECTIVE = textwrap.dedent("""
    import json, os, sys, time
    import torch, torch.distributed as dist
    hosts = json.loads(os.environ["SM_HOSTS"]); me = os.environ["SM_CURRENT_HOST"]
    rank = hosts.index(me)
    failure = os.path.join(os.environ["SM_OUTPUT_DIR"], "failure")
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=len(hosts))
    if me == "algo-2":
        time.sleep(0.5)
        open(failure, "w").write("ValueError: the real reason, on algo-2")
        dist.destroy_process_group(); time.sleep(0.3); os._exit(3)
    try:
        t = torch.zeros(1); dist.all_reduce(t)
    except Exception as exc:
        open(failure, "w").write(f"RuntimeError (survivor): {exc}")
        os._exit(1)
""")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_the_host_that_caused_a_failure_is_blamed_not_the_survivor(project):
    # torch is found, not imported: imported into pytest, it crashed later tests' forks.
    (project.root / "src" / "train.py").write_text(CRASH_IN_COLLECTIVE)
    project.experiment("crash", TWO_HOSTS.replace("expect", "max_run: 60\n    expect"))
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["reason: algo-2: ValueError: the real reason, on algo-2;"
                                 " also failed: algo-1: RuntimeError (survivor): *"])
    saved = json.loads((_attempt(project, "crash") / "result.json").read_text())
    assert saved["failure_reason"].startswith(
        "algo-2: ValueError: the real reason, on algo-2; also failed: algo-1: "), saved
    assert saved["exit_code"] == 3


def test_blame_order_first_failure_file_written_then_first_seen_exiting():
    from sm_pytest.run.host_failure import also_failed, blame_order
    written = {"algo-1": 5.0, "algo-2": 3.0, "algo-3": None, "algo-4": None}
    seen = {"algo-1": 1.0, "algo-2": 9.0, "algo-3": 4.0, "algo-4": 2.0}
    order = blame_order(list(written), written_at=written.get, seen_at=seen.get)
    # Failure files by when they were written, then the others by when they exited.
    assert order == ["algo-2", "algo-1", "algo-4", "algo-3"]
    assert blame_order(["algo-3", "algo-4"], written_at=written.get,
                       seen_at=seen.get) == ["algo-4", "algo-3"]
    assert also_failed([]) == ""
    assert also_failed([("algo-1", "RuntimeError: closed\ntraceback"), ("algo-3", "")]) == (
        "; also failed: algo-1: RuntimeError: closed; algo-3")


def test_end_waits_one_drain_deadline_for_all_log_readers(tmp_path):
    import threading

    from sm_pytest.backends.local_hosts import Host, Hosts

    # Readers that never finish (a pipe held open by a grandchild): end() gives them one
    # shared deadline, not `drain` seconds each in turn.
    never = threading.Event()
    from types import SimpleNamespace
    no_model = SimpleNamespace(model_dir=tmp_path / "absent")
    hosts = [Host(f"algo-{i}", tree=no_model, log_path=tmp_path / f"algo-{i}.log")
             for i in (1, 2, 3)]
    for host in hosts:
        host.reader = threading.Thread(target=never.wait, daemon=True)
        host.reader.start()
    group = Hosts(tmp_path, hosts, grace=0.0, drain=1.0)
    started = time.monotonic()
    try:
        group.end()
    finally:
        never.set()
    assert time.monotonic() - started < 1.8


SAYS_ITS_GPUS = textwrap.dedent("""
    import os
    print(f"host={os.environ['SM_CURRENT_HOST']} devices={os.environ.get('CUDA_VISIBLE_DEVICES')}"
          f" gpus={os.environ['SM_NUM_GPUS']}", flush=True)
    print("epoch=1 loss=0.1 accuracy=0.95", flush=True)
""")


def test_local_hosts_divide_the_gpus_and_fewer_gpus_than_hosts_is_refused(project,
                                                                          monkeypatch):
    from sm_pytest.run.contract import environment

    # No GPU here: the machine's count is faked (nvidia-smi's), the division is real.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(environment, "_gpus_on_host", lambda: 4)
    (project.root / "src" / "train.py").write_text(SAYS_ITS_GPUS)
    project.experiment("pair", TWO_HOSTS)
    project.run().assert_outcomes(passed=1)
    attempt = _attempt(project, "pair")
    assert "host=algo-1 devices=0,1 gpus=2" in (attempt / "algo-1.log").read_text()
    assert "host=algo-2 devices=2,3 gpus=2" in (attempt / "algo-2.log").read_text()

    monkeypatch.setattr(environment, "_gpus_on_host", lambda: 1)
    refused = project.run()
    refused.assert_outcomes(errors=1)
    refused.stdout.fnmatch_lines([
        "*experiments/pair.yaml:3: instance_count 2 is more hosts than this machine has GPUs"
        " (1): each local host gets GPUs of its own*use at most 1 host, or set"
        " CUDA_VISIBLE_DEVICES= (empty) to train every host on the CPU*"])
    # CUDA_VISIBLE_DEVICES="": the CPU, every host.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    project.run().assert_outcomes(passed=1)
    attempt = sorted((project.artifacts / "pair" / "default").glob("attempt-*"))[-1]
    assert "host=algo-2 devices= gpus=0" in (attempt / "algo-2.log").read_text()


def test_max_run_stops_every_host(project):
    (project.root / "src" / "train.py").write_text(SLEEPER)
    project.experiment("slow", TWO_HOSTS.replace("expect", "max_run: 3\n    expect"))
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*slow: the run timed out and produced no verdict"])
    assert_gone(_pids(project, within=1))


# SIGTERM (a CI runner cancelling the job) takes Ctrl-C's path (signals.py).
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_both_hosts_and_keeps_their_logs(project, sig):
    (project.root / "src" / "train.py").write_text(SLEEPER)
    project.experiment("long", TWO_HOSTS.replace("expect", "max_run: 300\n    expect"))
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pids = _pids(project)
        attempt = _attempt(project, "long")
        deadline = time.time() + 30
        while time.time() < deadline and (attempt / "train.log").read_text().count("ready") < 2:
            time.sleep(0.1)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert_gone(pids)
    for host in ("algo-1", "algo-2"):
        assert f"epoch=1 loss=0.5 accuracy=0.9 on {host}" in (attempt / f"{host}.log").read_text()
        assert f"[{host}] ready" in (attempt / "train.log").read_text()
    saved = json.loads((attempt / "result.json").read_text())
    assert saved["status"] == "interrupted"
    if sig == signal.SIGTERM:
        assert "interrupted (SIGTERM)" in saved["failure_reason"]
    assert saved["final_metrics"] == {"loss": 0.5, "accuracy": 0.9}


def test_hosts_and_xdist_workers_share_the_cores():
    from sm_pytest.backends.local import thread_share

    cores = os.cpu_count() or 1
    assert thread_share({}, hosts=2) == {"OMP_NUM_THREADS": str(max(1, cores // 2))}
    assert thread_share({"PYTEST_XDIST_WORKER_COUNT": "2"}, hosts=2) == {
        "OMP_NUM_THREADS": str(max(1, cores // 4))}
    assert thread_share({"OMP_NUM_THREADS": "3"}, hosts=2) == {}
    assert thread_share({}, hosts=1) == {}


def test_two_hosts_stream_with_their_prefix_and_show_progress_from_every_host(project):
    (project.root / "src" / "train.py").write_text(TWO_HOSTS_FAKE)
    project.experiment("pair", TWO_HOSTS)
    streamed = project.run_subprocess("-s")
    streamed.assert_outcomes(passed=1)
    streamed.stdout.fnmatch_lines(["[[]pair] [[]algo-1] epoch=1 loss=0.1 accuracy=0.91",
                                   "[[]pair] [[]algo-2] epoch=1 loss=0.1 accuracy=0.97"])
    # Without -s: the progress line, fed by every host's unprefixed lines (the last is
    # algo-2's).
    quiet = project.run_subprocess()
    quiet.assert_outcomes(passed=1)
    quiet.stdout.fnmatch_lines(["pair: epoch 1  accuracy=0.97  loss=0.1  (* s)"])
    assert "[algo-1]" not in quiet.stdout.str()


def test_sigkill_of_pytest_takes_every_host_with_it(project):
    # No handler runs on SIGKILL: each host's watchdog (processes.py) kills its group.
    (project.root / "src" / "train.py").write_text(SLEEPER)
    project.experiment("long", TWO_HOSTS.replace("expect", "max_run: 300\n    expect"))
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider"],
        cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pids = _pids(project)
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_gone(pids)


# A worker under torchrun, in a session of its own (torch.distributed.elastic
# SubprocessHandler: start_new_session=True), that takes its time on SIGTERM, as one that
# saves a checkpoint does: out of reach of a killpg of torchrun's group (processes.py).
SLOW_TO_STOP_WORKER = textwrap.dedent("""
    import os, signal, time
    signal.signal(signal.SIGTERM, lambda *_: time.sleep(120))
    with open(os.path.join(%r, "rank%%s.pid" %% os.environ["RANK"]), "w") as f:
        f.write(f"{os.getpid()} {os.getsid(0)}")
    print("ready", flush=True)
    time.sleep(300)
""")


def test_max_run_kills_torchruns_workers_on_every_host(project):
    (project.root / "src" / "train.py").write_text(SLOW_TO_STOP_WORKER % str(project.root))
    project.experiment("slow", TWO_HOSTS.replace("expect", """max_run: 15
    distribution: {torch_distributed: {enabled: true}}
    expect"""))
    started = time.time()
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*slow: the run timed out and produced no verdict"])
    assert time.time() - started < 60  # not torchrun's own 30 s wait for its workers
    files = sorted(project.root.glob("rank*.pid"))
    assert [f.name for f in files] == ["rank0.pid", "rank1.pid"], "a worker never started"
    workers = [tuple(map(int, f.read_text().split())) for f in files]
    assert all(pid == session for pid, session in workers)  # each in a session of its own
    try:
        assert_gone([pid for pid, _ in workers], within=5)
    finally:
        for pid, _ in workers:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
