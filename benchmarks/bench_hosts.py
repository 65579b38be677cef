"""Multi-host training on the sample: 2 local hosts against 1 host, wall time and accuracy.

Both run src/train.py with the same hyperparameters and seed, in the same invocation of this
script, interleaved (1 host, 2 hosts, 1 host, ...). Two ways to run them:

* ``--via plugin`` (default): ``pytest experiments -k NAME`` in a throw-away copy of the
  project, one experiment file with ``instance_count: 2`` and
  ``distribution: {torch_distributed: {enabled: true}}`` and one without; wall time is the
  whole pytest process, accuracy the run's ``test_accuracy`` from its result.json;
* ``--via torchrun``: the script directly, ``python train.py`` against
  ``python -m torch.distributed.run --nnodes 2 --nproc_per_node 1 --node_rank R`` started
  once per host, as the SageMaker PyTorch toolkit starts it on each instance.

With 2 hosts, ``--batch-size`` is per process, so each optimizer step sees twice the samples
and an epoch has half the steps; the accuracy after the same epochs is therefore not that of
1 host (see src/train.py's docstring). ``--same-global-batch`` halves the 2-host batch size to
compare at the same global batch. No speed-up is expected on a 2-core machine: two ranks of
one thread each against one process with two threads, plus the gradient all-reduce.

    python benchmarks/bench_hosts.py [--via plugin|torchrun] [--epochs 3] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _project import EPOCH_LINE, busy_seconds, free_port, make_mnist_project, other_load

ROOT = Path(__file__).resolve().parents[1]
QUIET_LOAD = 0.10  # share of the CPUs used by other processes above which a run is "noisy"


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(run, *args) -> dict:
    """run(*args) -> (wall, accuracy, samples/s), plus the share of the CPUs that processes
    other than ours used meanwhile (the other engineers' tests on a shared VM)."""
    busy0, ours0 = busy_seconds(), children_seconds()
    wall, accuracy, throughput = run(*args)
    other = other_load(busy0, busy_seconds(), children_seconds() - ours0, wall)
    return {"wall": wall, "accuracy": accuracy, "throughput": throughput, "other": other}


def hyperparameters(args, hosts: int) -> dict:
    batch = args.batch_size // hosts if args.same_global_batch else args.batch_size
    return {"epochs": args.epochs, "batch-size": batch, "seed": 1, **(
        {"limit-train": args.limit_train} if args.limit_train else {})}


# ------------------------------------------------------------------------ via the plugin
def plugin_run(root: Path, args, hosts: int, index: int) -> tuple[float, float, float]:
    name = f"hosts{hosts}_run{index}"
    body = {"base": "config/mnist.yaml", "hyperparameters": hyperparameters(args, hosts)}
    if hosts > 1:
        body.update(instance_count=hosts, distribution={"torch_distributed": {"enabled": True}})
    # JSON is YAML: no quoting questions.
    (root / "experiments" / f"{name}.yaml").write_text(json.dumps(body, indent=1) + "\n")
    command = [sys.executable, "-m", "pytest", "experiments", "-q", "-p", "no:cacheprovider",
               "-k", name]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    result = next((root / "sm-artifacts" / name).glob("*/attempt-*/result.json"))
    hosts_seen = sorted(p.name for p in (result.parent / "hosts").glob("algo-*"))
    if hosts > 1 and hosts_seen != [f"algo-{i}" for i in range(1, hosts + 1)]:
        sys.exit(f"{name}: expected {hosts} host trees under {result.parent}/hosts, "
                 f"found {hosts_seen}: is the plugin's multi-host path in place?")
    final = json.loads(result.read_text())["final_metrics"]
    return wall, final["test_accuracy"], final["samples_per_second"]


# ------------------------------------------------------------------------ via torchrun
def torchrun_run(root: Path, args, hosts: int, index: int) -> tuple[float, float, float]:
    base = root / f"hosts{hosts}_run{index}"
    argv = [a for k, v in hyperparameters(args, hosts).items() for a in (f"--{k}", str(v))]
    port, procs, logs = free_port(), [], []
    started = time.perf_counter()
    for rank in range(hosts):
        tree = base / f"algo-{rank + 1}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        env.update(SM_CHANNEL_TRAINING=str(ROOT / "data" / "mnist-sample"),
                   SM_MODEL_DIR=str(tree / "model"),
                   SM_OUTPUT_DATA_DIR=str(tree / "output" / "data"),
                   SM_CHECKPOINT_DIR=str(tree / "checkpoints"), GLOO_SOCKET_IFNAME="lo")
        if hosts == 1:
            command = [sys.executable, str(ROOT / "src" / "train.py"), *argv]
        else:
            # torch_distributed.py's command; 127.0.0.1 and a free port as sm-pytest uses locally.
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // hosts))
            command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(hosts),
                       "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
                       "--master_port", str(port), "--node_rank", str(rank),
                       str(ROOT / "src" / "train.py"), *argv]
        tree.mkdir(parents=True)
        logs.append(tree / "log")
        with open(logs[-1], "w") as log:
            procs.append(subprocess.Popen(command, env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - started
    if any(codes):
        sys.exit(f"{hosts} host(s) failed {codes}:\n" + "\n".join(p.read_text() for p in logs))
    last = EPOCH_LINE.findall(logs[0].read_text())[-1]
    return wall, float(last[1]), float(last[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--via", choices=("plugin", "torchrun"), default="plugin")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="interleaved pairs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-train", type=int, default=0)
    parser.add_argument("--same-global-batch", action="store_true",
                        help="2 hosts use batch-size / 2 each (same global batch as 1 host)")
    args = parser.parse_args()
    root = make_mnist_project() if args.via == "plugin" else Path(tempfile.mkdtemp())
    run = plugin_run if args.via == "plugin" else torchrun_run
    rows = {1: [], 2: []}
    try:
        for index in range(args.runs):
            for hosts in (1, 2):
                r = measured(run, root, args, hosts, index)
                rows[hosts].append(r)
                other = "n/a" if r["other"] is None else f"{100 * r['other']:.0f}%"
                print(f"run {index + 1}  {hosts} host(s)  wall {r['wall']:7.2f} s  "
                      f"test_accuracy {r['accuracy']:.4f}  last epoch "
                      f"{r['throughput']:7.1f} samples/s  other load {other}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {h: {k: statistics.median(r[k] for r in rs) for k in ("wall", "accuracy",
                                                               "throughput")}
           for h, rs in rows.items()}
    per_host = hyperparameters(args, 2)["batch-size"]
    print(f"\nvia {args.via}, {args.epochs} epochs, batch-size {args.batch_size} (1 host) / "
          f"{per_host} per host (2 hosts), {os.cpu_count()} CPUs, medians of {args.runs}:")
    for hosts, m in med.items():
        print(f"  {hosts} host(s): wall {m['wall']:7.2f} s  test_accuracy {m['accuracy']:.4f}"
              f"  last epoch {m['throughput']:7.1f} samples/s")
    print(f"  wall 2 hosts / 1 host: {med[2]['wall'] / med[1]['wall']:.2f}x "
          "(below 1 would be a speed-up)")
    loads = [r["other"] for rs in rows.values() for r in rs if r["other"] is not None]
    if loads and max(loads) >= QUIET_LOAD:
        print(f"  note: other processes used up to {100 * max(loads):.0f}% of the CPUs during "
              "a run; those figures are slowed down, and unevenly")


if __name__ == "__main__":
    main()
