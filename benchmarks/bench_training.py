"""Training speed: src/train.py against the PyTorch examples' MNIST pipeline.

The reference is pytorch/examples mnist/main.py as shipped: torchvision.datasets.MNIST with
transforms.Compose([ToTensor(), Normalize((0.1307,), (0.3081,))]), a DataLoader with
batch_size=64 and shuffle=True, the same Net, Adadelta(lr=1.0), StepLR(step_size=1,
gamma=0.7). "ours" is src/train.py run unchanged as the SageMaker toolkit would run it.
Both train on the same data for the same epochs with the same seed, each run in a fresh
subprocess, interleaved (ref, ours, ref, ours, ...) so that drift in machine load hits
both alike. Throughput is training samples / training seconds (evaluation excluded).

    python benchmarks/bench_training.py [--epochs 3] [--runs 3] [--data data/mnist-sample]

Needs torch and torchvision (the reference uses torchvision's dataset and transforms).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _project import busy_seconds, other_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(ROOT, "src", "train.py")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
QUIET_LOAD = 0.10  # share of the CPUs used by other processes above which a run is "noisy"
EPOCH_LINE = re.compile(
    r"^epoch=(\d+) train_loss=(\S+) test_loss=(\S+) test_accuracy=(\S+) "
    r"epoch_seconds=(\S+) samples_per_second=(\S+)$"
)


# --------------------------------------------------------------------------- reference
def reference_worker(root: str, epochs: int, seed: int, threads: int) -> dict:
    """pytorch/examples mnist/main.py (CPU path), timing train() and test() apart."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.optim.lr_scheduler import StepLR
    from torchvision import datasets, transforms

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = self.conv1(x)
            x = F.relu(x)
            x = self.conv2(x)
            x = F.relu(x)
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = self.fc1(x)
            x = F.relu(x)
            x = self.dropout2(x)
            x = self.fc2(x)
            return F.log_softmax(x, dim=1)

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    dataset1 = datasets.MNIST(root, train=True, download=False, transform=transform)
    dataset2 = datasets.MNIST(root, train=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(dataset1, batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(dataset2, batch_size=1000)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            output = model(data)
            loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()
        train_seconds = time.perf_counter() - t0
        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for data, target in test_loader:
                output = model(data)
                test_loss += F.nll_loss(output, target, reduction="sum").item()
                correct += output.argmax(dim=1).eq(target).sum().item()
        scheduler.step()
        history.append(
            {
                "epoch": epoch,
                "epoch_seconds": train_seconds,
                "test_accuracy": correct / len(dataset2),
                "samples": len(dataset1),
            }
        )
    return {"history": history}


# --------------------------------------------------------------------------- runners
def _measured(cmd, env=None):
    """Run cmd; return (stdout, wall seconds, share of the CPUs used by other processes)."""
    busy0, ru0, t0 = busy_seconds(), os.times(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    busy1, ru1, wall = busy_seconds(), os.times(), time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"benchmark run failed: {' '.join(cmd)} (exit {proc.returncode})")
    child = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
    return proc.stdout, wall, other_load(busy0, busy1, child, wall)


def run_reference(root, epochs, seed, threads):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        root,
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--threads",
        str(threads),
    ]
    out, wall, other = _measured(cmd)
    result = json.loads(out.strip().splitlines()[-1])
    return summarize(result["history"], wall, other)


def run_ours(data, epochs, seed, threads, workdir):
    shutil.rmtree(workdir, ignore_errors=True)
    env = dict(os.environ)
    env.update(
        {
            "SM_CHANNEL_TRAINING": data,
            "SM_MODEL_DIR": os.path.join(workdir, "model"),
            "SM_OUTPUT_DATA_DIR": os.path.join(workdir, "output", "data"),
            "SM_OUTPUT_DIR": os.path.join(workdir, "output"),
            "SM_CHECKPOINT_DIR": os.path.join(workdir, "checkpoints"),
        }
    )
    cmd = [sys.executable, TRAIN_PY, "--epochs", str(epochs), "--seed", str(seed)]
    if threads:
        cmd += ["--num-threads", str(threads)]
    out, wall, other = _measured(cmd, env)
    history = []
    for line in out.splitlines():
        m = EPOCH_LINE.match(line.strip())
        if m:
            seconds, sps = float(m.group(5)), float(m.group(6))
            history.append(
                {
                    "epoch": int(m.group(1)),
                    "epoch_seconds": seconds,
                    "test_accuracy": float(m.group(4)),
                    "samples": round(seconds * sps),
                }
            )
    if len(history) != epochs:
        raise SystemExit(f"expected {epochs} epoch lines from train.py, got {len(history)}:\n{out}")
    return summarize(history, wall, other)


def summarize(history, wall, other):
    seconds = sum(h["epoch_seconds"] for h in history)
    samples = sum(h["samples"] for h in history)
    return {
        "epoch_seconds": seconds / len(history),
        "samples_per_second": samples / seconds,
        "test_accuracy": history[-1]["test_accuracy"],
        "wall_seconds": wall,
        "other_load": other,
    }


def prepare_raw(data, root):
    """Lay the data out as torchvision's MNIST(download=False) wants it: raw files in MNIST/raw."""
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for name in RAW_FILES:
        gz, plain = os.path.join(data, name + ".gz"), os.path.join(data, name)
        if os.path.exists(gz):
            with gzip.open(gz, "rb") as src, open(os.path.join(raw, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif os.path.exists(plain):
            shutil.copyfile(plain, os.path.join(raw, name))
        else:
            raise SystemExit(f"{name}[.gz] not found in {data}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3, help="runs per pipeline, interleaved")
    ap.add_argument(
        "--data",
        default=os.path.join(ROOT, "data", "mnist-sample"),
        help="directory with the four MNIST IDX files (.gz or raw)",
    )
    ap.add_argument("--seed", type=int, default=1, help="seed of run 1; run i uses seed + i - 1")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (0: default)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(reference_worker(args.worker, args.epochs, args.seed, args.threads)))
        return 0

    data = os.path.abspath(args.data)
    results = {"reference": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        prepare_raw(data, os.path.join(tmp, "ref"))
        print(
            f"data {data}, {args.epochs} epochs, {args.runs} interleaved runs per pipeline, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        header = (
            f"{'run':>3}  {'pipeline':<9}  {'seed':>4}  {'epoch s':>8}  {'samples/s':>9}  "
            f"{'test acc':>8}  {'wall s':>7}  {'other load':>10}"
        )
        print(header)
        print("-" * len(header), flush=True)
        for i in range(args.runs):
            seed = args.seed + i
            for name in ("reference", "ours"):
                if name == "reference":
                    r = run_reference(os.path.join(tmp, "ref"), args.epochs, seed, args.threads)
                else:
                    r = run_ours(data, args.epochs, seed, args.threads, os.path.join(tmp, "ours"))
                r["seed"] = seed
                results[name].append(r)
                other = "n/a" if r["other_load"] is None else f"{100 * r['other_load']:.0f}%"
                print(
                    f"{i + 1:>3}  {name:<9}  {seed:>4}  {r['epoch_seconds']:>8.3f}  "
                    f"{r['samples_per_second']:>9.1f}  {r['test_accuracy']:>8.4f}  "
                    f"{r['wall_seconds']:>7.1f}  {other:>10}",
                    flush=True,
                )

    print()
    med = {
        name: {
            k: statistics.median(r[k] for r in rs)
            for k in ("epoch_seconds", "samples_per_second", "test_accuracy")
        }
        for name, rs in results.items()
    }
    for name in ("reference", "ours"):
        m = med[name]
        print(
            f"median {name:<9}  epoch {m['epoch_seconds']:.3f} s  "
            f"{m['samples_per_second']:.1f} samples/s  test accuracy {m['test_accuracy']:.4f}"
        )
    ratio = med["ours"]["samples_per_second"] / med["reference"]["samples_per_second"]
    pairs = list(zip(results["reference"], results["ours"], strict=True))
    per_pair = [o["samples_per_second"] / r["samples_per_second"] for r, o in pairs]
    print(
        f"throughput ratio ours/reference (medians): {ratio:.2f}x; per interleaved pair: "
        + ", ".join(f"{x:.2f}" for x in per_pair)
    )
    quiet = [
        x
        for x, (r, o) in zip(per_pair, pairs, strict=True)
        if r["other_load"] is not None
        and o["other_load"] is not None
        and max(r["other_load"], o["other_load"]) < QUIET_LOAD
    ]
    if quiet and len(quiet) < len(per_pair):
        print(
            f"median ratio over the {len(quiet)} pairs where other processes used < "
            f"{100 * QUIET_LOAD:.0f}% of the CPUs: {statistics.median(quiet):.2f}x"
        )
    loads = [r["other_load"] for rs in results.values() for r in rs if r["other_load"] is not None]
    if loads and max(loads) >= QUIET_LOAD:
        print(
            f"note: other processes used up to {100 * max(loads):.0f}% of the CPUs during a run "
            "(column 'other load'); those runs are slowed down"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "runs": results, "median": med, "ratio": ratio}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
