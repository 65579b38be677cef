"""A local run on several hosts (`instance_count: 2`), as a user runs it: one process per
host, each with its own /opt/ml tree and log, the interleaved train.log, the merged model,
metrics from every host, and every host stopped when one fails, on max_run or on Ctrl-C."""

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
