"""The GPU check for src/train.py: CUDA, AMP and nccl, in one prepared run.

On a CUDA machine it trains the MNIST sample (or ``--data``, e.g. the full MNIST) four ways
and prints one row each: 1 process without AMP, 1 process with ``--amp bf16`` and with
``--amp fp16``, and 2 processes through torchrun with nccl (``--dist-backend nccl``; one GPU
each when there are two, else both on one GPU, which nccl refuses: the row then says so).
Each row has the final test accuracy, the last epoch's samples/s, the wall time and the
device the run reported. It stops with a plain message, and exit status 2, where no CUDA
device is visible, unless ``--allow-cpu`` (which only checks that this script works: the
figures are then CPU figures and say so).

    python benchmarks/bench_gpu.py [--epochs 2] [--data data/mnist-sample] [--allow-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _project import EPOCH_LINE, free_port

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, launcher: list[str], args: list[str], data: Path) -> dict:
    """One training run in a fresh tree; its last epoch line, wall time and outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for sub in ("model", "output/data", "checkpoints"):
            (tmp / sub).mkdir(parents=True)
        env = {**os.environ, "SM_CHANNEL_TRAINING": str(data), "SM_MODEL_DIR": str(tmp / "model"),
               "SM_OUTPUT_DIR": str(tmp / "output"),
               "SM_OUTPUT_DATA_DIR": str(tmp / "output" / "data"),
               "SM_CHECKPOINT_DIR": str(tmp / "checkpoints")}
        started = time.perf_counter()
        done = subprocess.run([*launcher, str(ROOT / "src" / "train.py"), *args], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        lines = EPOCH_LINE.findall(done.stdout)
        failure = tmp / "output" / "failure"
        reason = failure.read_text().strip() if failure.is_file() else done.stderr[-400:]
    row = {"run": name, "exit": done.returncode, "wall_s": round(wall, 1)}
    if lines:
        epoch, accuracy, rate = lines[-1]
        row.update(epochs=int(epoch), test_accuracy=float(accuracy), samples_per_s=float(rate))
    if done.returncode:
        row["failure"] = " ".join(reason.split())[:300]
    device = re.search(r"device[=: ]+([^\s,]+)", done.stdout + done.stderr)
    row["device"] = device.group(1) if device else "?"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "mnist-sample")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="run without CUDA too (checks this script, not the GPU path)")
    ap.add_argument("--json", help="also write the rows to this file")
    opts = ap.parse_args(argv)

    import torch  # here, not at the top: --help stays instant

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0 and not opts.allow_cpu:
        print("no CUDA device is visible: nothing measured (use --allow-cpu to check the"
              " script itself on the CPU)", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {gpus} GPU(s)"
          + (f": {torch.cuda.get_device_name(0)}" if gpus else " (CPU figures)"))
    base = ["--epochs", str(opts.epochs)]
    python = [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                "--nproc_per_node", "2", "--master_port", str(free_port())]
    backend = "nccl" if gpus else "gloo"
    rows = [
        run("1 process", python, base, opts.data),
        run("1 process, --amp bf16", python, [*base, "--amp", "bf16"], opts.data),
        run("1 process, --amp fp16", python, [*base, "--amp", "fp16"], opts.data),
        run(f"2 processes ({backend})", torchrun, [*base, "--dist-backend", backend], opts.data),
    ]
    if gpus == 1:
        rows[-1]["note"] = "both ranks on one GPU"
    print(f"{'run':28} {'exit':>4} {'acc':>7} {'samples/s':>10} {'wall s':>7}  device")
    for row in rows:
        print(f"{row['run']:28} {row['exit']:>4} {row.get('test_accuracy', float('nan')):>7.4f}"
              f" {row.get('samples_per_s', float('nan')):>10.1f} {row['wall_s']:>7.1f}"
              f"  {row['device']}  {row.get('failure', '')} {row.get('note', '')}".rstrip())
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(row["exit"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
