"""src/train.py on several processes, without the plugin: under torchrun, as the SageMaker
PyTorch image runs it with torch_distributed, and as one process per host (the toolkit's plain
runner, SM_HOSTS / SM_CURRENT_HOST plus the launcher's MASTER_ADDR / MASTER_PORT)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DATA = ROOT / "data" / "mnist-sample"
# Small and single-threaded: two ranks share the two cores, and the figures must not depend
# on how many intra-op threads each got.
ARGS = ["--limit-train", "512", "--num-threads", "1", "--seed", "5"]
RESULT_KEYS = ("train_loss", "test_loss", "test_accuracy")


@pytest.fixture(scope="module")
def distributed_module():
    """src/distributed.py, imported as train.py imports it (the code dir on sys.path)."""
    sys.path.insert(0, str(SRC))
    try:
        import distributed

        yield distributed
    finally:
        sys.path.remove(str(SRC))
        for name in ("distributed", "report"):
            sys.modules.pop(name, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_env(tree: Path, data: Path = DATA, **extra: str) -> dict:
    """A clean environment (no inherited SM_* or torchrun variables) pointing at tree/."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SM_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                    "MASTER_ADDR", "MASTER_PORT")}
    env.update(
        SM_CHANNEL_TRAINING=str(data),
        SM_MODEL_DIR=str(tree / "model"),
        SM_OUTPUT_DATA_DIR=str(tree / "output" / "data"),
        SM_CHECKPOINT_DIR=str(tree / "checkpoints"),
        GLOO_SOCKET_IFNAME="lo",  # what sm-pytest sets locally (the contract's hosts.py)
        **extra,
    )
    return env


def torchrun(tree: Path, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(SRC / "train.py"), *ARGS, *argv]
    done = subprocess.run(command, env=host_env(tree), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def per_host(root: Path, *argv: str, data: dict | None = None) -> list[subprocess.Popen]:
    """One `python train.py` per host, as the toolkit's ProcessRunner starts it."""
    common = {"SM_HOSTS": json.dumps(["algo-1", "algo-2"]), "MASTER_ADDR": "127.0.0.1",
              "MASTER_PORT": str(free_port())}
    root.mkdir(parents=True, exist_ok=True)
    procs = []
    for host in ("algo-1", "algo-2"):
        env = host_env(root / host, (data or {}).get(host, DATA), SM_CURRENT_HOST=host,
                       **common)
        log = open(root / f"{host}.log", "w")  # noqa: SIM115 - the child keeps its own copy
        procs.append(subprocess.Popen([sys.executable, str(SRC / "train.py"), *ARGS, *argv],
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def epoch_lines(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        if line.startswith("epoch="):
            row = dict(part.split("=", 1) for part in line.split())
            rows.append({k: row[k] for k in ("epoch", *RESULT_KEYS)})
    return rows


def test_the_world_comes_from_torchrun_or_the_host_list(distributed_module):
    World, UsageError = distributed_module.World, distributed_module.UsageError
    w = World.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                        "SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-1"})
    assert (w.rank, w.size, w.local_rank, w.launcher) == (3, 4, 1, "torchrun")
    hosts = {"SM_HOSTS": '["algo-1", "algo-10", "algo-2"]', "SM_CURRENT_HOST": "algo-2",
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    w = World.from_env(hosts)
    # The rank is the index in the host list as given (sorted as strings by SageMaker).
    assert (w.rank, w.size, w.local_rank, w.launcher) == (2, 3, 0, "SM_HOSTS")
    for one in ({}, {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"},
                {"RANK": "0", "WORLD_SIZE": "1"}):
        assert World.from_env(one).size == 1
    assert World.from_env({}).launcher is None and World.from_env({}).main
    with pytest.raises(UsageError, match="MASTER_ADDR and MASTER_PORT are unset"):
        World.from_env({"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-1"})
    with pytest.raises(UsageError, match="'algo-3' is not in SM_HOSTS"):
        World.from_env({**hosts, "SM_CURRENT_HOST": "algo-3"})
    with pytest.raises(UsageError, match="RANK 2 is outside WORLD_SIZE 2"):
        World.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_world_size_one_makes_no_process_group(distributed_module):
    world = distributed_module.World.from_env({"SM_HOSTS": '["algo-1"]',
                                               "SM_CURRENT_HOST": "algo-1"})
    assert world.init("auto", False, None) is None and world.dist is None
    assert world.gather({"x": 1}) == [{"x": 1}] and world.broadcast(7) == 7
    world.close()  # a no-op without a group


@pytest.mark.slow
def test_two_hosts_and_torchrun_train_alike_and_resume_exactly(tmp_path):
    # Uninterrupted, 2 epochs, one process per host.
    procs = per_host(tmp_path / "hosts", "--epochs", "2")
    assert [p.wait(timeout=180) for p in procs] == [0, 0], (
        (tmp_path / "hosts" / "algo-1.log").read_text()
        + (tmp_path / "hosts" / "algo-2.log").read_text())
    host_logs = [(tmp_path / "hosts" / f"{h}.log").read_text() for h in ("algo-1", "algo-2")]
    uninterrupted = epoch_lines(host_logs[0])
    assert [r["epoch"] for r in uninterrupted] == ["1", "2"]
    assert float(uninterrupted[-1]["test_accuracy"]) > 0.5
    # Rank 0 alone prints the metric lines and writes the model and metrics.
    assert epoch_lines(host_logs[1]) == []
    assert "rank 1 of 2 (gloo, from SM_HOSTS)" in host_logs[1]
    h1, h2 = tmp_path / "hosts" / "algo-1", tmp_path / "hosts" / "algo-2"
    assert (h1 / "model" / "model.pt").is_file()
    assert (h1 / "checkpoints" / "checkpoint.pt").is_file()
    assert not (h2 / "model" / "model.pt").exists()
    assert not (h2 / "checkpoints" / "checkpoint.pt").exists()
    metrics = json.loads((h1 / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test_accuracy"] == float(
        uninterrupted[-1]["test_accuracy"])

    # torchrun, 2 processes on one host: the same ranks and seeds give the same first epoch;
    # then a resume from its checkpoint gives the uninterrupted run's second epoch exactly.
    tree = tmp_path / "torchrun"
    first = epoch_lines(torchrun(tree, "--epochs", "1").stdout)
    assert first == uninterrupted[:1]
    torch = pytest.importorskip("torch")
    ckpt = torch.load(tree / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]["ranks"]) == 2
    lone = tmp_path / "lone" / "algo-1" / "checkpoints"  # for the last part
    lone.mkdir(parents=True)
    shutil.copy(tree / "checkpoints" / "checkpoint.pt", lone / "checkpoint.pt")
    resumed = torchrun(tree, "--epochs", "2")
    assert resumed.stdout.count("resuming from checkpoint at epoch 1") == 2  # every rank
    assert epoch_lines(resumed.stdout) == uninterrupted[1:]
    resumed_metrics = json.loads((tree / "output" / "data" / "metrics.json").read_text())
    assert [row["epoch"] for row in resumed_metrics["history"]] == [1, 2]

    # Hosts with their own trees where only algo-1's holds the checkpoint: algo-2 resumes
    # from the one rank 0 sends, and the second epoch is still the uninterrupted one.
    procs = per_host(tmp_path / "lone", "--epochs", "2")
    assert [p.wait(timeout=180) for p in procs] == [0, 0]
    logs = [(tmp_path / "lone" / f"{h}.log").read_text() for h in ("algo-1", "algo-2")]
    assert "rank 1: no checkpoint here, resuming from rank 0's at epoch 1" in logs[1]
    assert epoch_lines(logs[0]) == uninterrupted[1:]


@pytest.mark.slow
def test_a_failing_host_writes_its_own_failure_file(tmp_path):
    bad = tmp_path / "bad-data"
    bad.mkdir()
    for f in DATA.iterdir():
        (bad / f.name).write_bytes(b"" if f.name.startswith("train-images") else f.read_bytes())
    procs = per_host(tmp_path, "--epochs", "1", data={"algo-2": bad})
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=120))
        finally:
            if p.poll() is None:
                p.kill()
    assert codes == [1, 1]
    reason = (tmp_path / "algo-2" / "output" / "failure").read_text()
    assert reason.startswith("rank 1 of 2: UsageError: bad training data in ")
    # Rank 0 fails because its peer left, and says so in its own host's tree.
    peer = (tmp_path / "algo-1" / "output" / "failure").read_text()
    assert peer.startswith("rank 0 of 2: ") and "closed by peer" in peer
