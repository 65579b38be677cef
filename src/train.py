"""Train the PyTorch examples MNIST CNN; entry point for the SageMaker training toolkit.

Script mode: hyperparameters arrive as ``--key value`` arguments, paths as SM_* environment
variables (SageMaker's defaults apply when they are unset). Per epoch it prints one line

    epoch=1 train_loss=0.312456 test_loss=0.102345 test_accuracy=0.9670 \
        epoch_seconds=3.214 samples_per_second=1244.6      (a single line)

(epoch_seconds is the training time of the epoch, evaluation excluded, so
samples_per_second = training samples / epoch_seconds), writes metrics.json to the output
data dir, model.pt + model.json to the model dir, and a checkpoint per epoch from which an
interrupted run resumes. On error it writes the reason to the failure file and exits 1.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import sys
import time
import traceback

METRIC_KEYS = ("train_loss", "test_loss", "test_accuracy", "epoch_seconds", "samples_per_second")
DEFAULT_DATA_DIR = "/opt/ml/input/data/training"
DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_OUTPUT_DATA_DIR = "/opt/ml/output/data"
DEFAULT_CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_ARGS = ("epochs", "lr", "batch_size", "gamma", "seed", "limit_train", "amp")


class UsageError(Exception):
    """Bad arguments or inputs: reported without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"invalid arguments: {message}")


def parse_args(argv=None):
    p = _Parser(description="Train the MNIST CNN (SageMaker script mode).", allow_abbrev=False)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1.0, help="Adadelta learning rate")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    p.add_argument(
        "--test-batch-size", "--test_batch_size", dest="test_batch_size", type=int, default=1000
    )
    p.add_argument("--gamma", type=float, default=0.7, help="StepLR decay per epoch")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--log-interval",
        "--log_interval",
        dest="log_interval",
        type=int,
        default=0,
        help="log every N batches (0: no per-batch logs)",
    )
    p.add_argument(
        "--num-threads",
        "--num_threads",
        dest="num_threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch default)",
    )
    p.add_argument(
        "--limit-train",
        "--limit_train",
        dest="limit_train",
        type=int,
        default=0,
        help="train on the first N samples only (0: all)",
    )
    p.add_argument(
        "--amp",
        choices=("off", "bf16", "fp16"),
        default="off",
        help="autocast on CUDA (ignored on CPU)",
    )
    args, unknown = p.parse_known_args(argv)
    for name in ("epochs", "batch_size", "test_batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"invalid arguments: --{name.replace('_', '-')} must be >= 1")
    for name in ("log_interval", "num_threads", "limit_train"):
        if getattr(args, name) < 0:
            raise UsageError(f"invalid arguments: --{name.replace('_', '-')} must be >= 0")
    return args, unknown


def paths():
    output_data = os.environ.get("SM_OUTPUT_DATA_DIR") or DEFAULT_OUTPUT_DATA_DIR
    output = os.environ.get("SM_OUTPUT_DIR") or os.path.dirname(os.path.normpath(output_data))
    return {
        "data": os.environ.get("SM_CHANNEL_TRAINING") or DEFAULT_DATA_DIR,
        "data_from_env": bool(os.environ.get("SM_CHANNEL_TRAINING")),
        "model": os.environ.get("SM_MODEL_DIR") or DEFAULT_MODEL_DIR,
        "output_data": output_data,
        "checkpoint": os.environ.get("SM_CHECKPOINT_DIR") or DEFAULT_CHECKPOINT_DIR,
        "failure": os.path.join(output, "failure"),
    }


def log(msg, stream=None):
    print(msg, file=stream or sys.stdout, flush=True)


def write_failure(path, text):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        log(f"warning: could not write failure file {path}: {exc}", sys.stderr)


def tune_cpu_allocator():
    """Keep freed memory in glibc's heap instead of returning it to the OS.

    Every training step allocates and frees tensors of a few MB; with glibc's defaults
    they are mmap'ed and unmapped each time, and the page faults on fresh pages cost as
    much as the convolutions on small VMs. A 32 MiB mmap threshold (glibc's maximum)
    and a 1 GiB trim threshold make the allocations reuse warm pages.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1
        return libc.mallopt(m_trim_threshold, 1 << 30) == 1 and ok
    except (OSError, AttributeError):  # not glibc
        return False


def save_atomic(obj, path, torch):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(obj, path):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def prepare_checkpoint_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):  # left by a run killed while saving
            if name.startswith(CHECKPOINT_NAME + ".tmp-"):
                os.remove(os.path.join(path, name))
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
        return True
    except OSError as exc:
        log(
            f"warning: checkpoint dir {path} is not writable ({exc}); "
            "continuing without checkpoints"
        )
        return False


def evaluate(model, x, y, batch_size, torch, F):
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            out = model(x[start : start + batch_size]).float()
            target = y[start : start + batch_size]
            loss_sum += F.nll_loss(out, target, reduction="sum").double()
            correct += (out.argmax(dim=1) == target).sum()
    n = x.shape[0]
    return loss_sum.item() / n, correct.item() / n


def train(args, p):
    if not os.path.isdir(p["data"]):
        source = (
            "from SM_CHANNEL_TRAINING"
            if p["data_from_env"]
            else "SM_CHANNEL_TRAINING is unset; SageMaker default"
        )
        raise UsageError(
            f"training data directory {p['data']} ({source}) does not exist: set "
            "SM_CHANNEL_TRAINING to a directory holding the MNIST IDX files "
            "(train-images-idx3-ubyte[.gz] etc.), or give the job a 'training' input channel"
        )

    import torch
    import torch.nn.functional as F

    from mnist_data import MNIST_MEAN, MNIST_STD, MnistDataError, load_split
    from model import ARCHITECTURE, INPUT_SHAPE, NUM_CLASSES, Net

    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    if use_cuda:
        # cuBLAS needs this for deterministic results; it is read when cuBLAS starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        setup = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        setup = f"allocator tuned: {'yes' if tune_cpu_allocator() else 'no'}"
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp) if use_cuda else None
    if amp_dtype is not None:
        setup += f", autocast {args.amp}"
    log(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {setup}")

    try:
        x_train, y_train = load_split(p["data"], "train")
        x_test, y_test = load_split(p["data"], "test")
    except MnistDataError as exc:
        raise UsageError(f"bad training data in {p['data']}: {exc}") from exc
    if args.limit_train:
        x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    n_train = x_train.shape[0]
    if n_train == 0:
        raise UsageError(f"no training samples in {p['data']}")
    log(f"data {p['data']}: {n_train} train / {x_test.shape[0]} test samples")

    for d in (p["model"], p["output_data"]):
        os.makedirs(d, exist_ok=True)
    ckpt_path = os.path.join(p["checkpoint"], CHECKPOINT_NAME)
    checkpointing = prepare_checkpoint_dir(p["checkpoint"])

    torch.manual_seed(args.seed)
    shuffle_gen = torch.Generator().manual_seed(args.seed)
    model = Net().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr, foreach=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=args.gamma)
    scaler = None
    if amp_dtype is torch.float16:
        if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
            scaler = torch.amp.GradScaler("cuda")
        else:
            scaler = torch.cuda.amp.GradScaler()
    history, start_epoch = [], 0
    # Hyperparameters the run started with; a resumed run keeps reporting those.
    run_args = {k: getattr(args, k) for k in CHECKPOINT_ARGS}

    if checkpointing and os.path.exists(ckpt_path):
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        shuffle_gen.set_state(ckpt["rng"]["shuffle"])
        if use_cuda and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        run_args.update({k: v for k, v in ckpt.get("args", {}).items() if k in CHECKPOINT_ARGS})
        changed = {
            k: (v, getattr(args, k))
            for k, v in run_args.items()
            if k != "epochs" and getattr(args, k) != v
        }
        if changed:
            log(
                "warning: checkpoint was written with other hyperparameters: "
                + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            )
        log(f"resuming from checkpoint at epoch {start_epoch}")

    batches = math.ceil(n_train / args.batch_size)
    for epoch in range(start_epoch + 1, args.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        if use_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, generator=shuffle_gen).to(device)
        for i in range(batches):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            data, target = x_train[idx], y_train[idx]
            optimizer.zero_grad(set_to_none=True)
            if amp_dtype is not None:
                with torch.autocast("cuda", dtype=amp_dtype):
                    output = model(data)
                loss = F.nll_loss(output.float(), target)
            else:
                loss = F.nll_loss(model(data), target)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_sum += loss.detach()
            if args.log_interval and (i + 1) % args.log_interval == 0:
                log(f"train epoch {epoch} batch {i + 1}/{batches} loss {loss.item():.6f}")
        train_loss = loss_sum.item() / batches
        if use_cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        scheduler.step()

        t1 = time.perf_counter()
        test_loss, test_accuracy = evaluate(model, x_test, y_test, args.test_batch_size, torch, F)
        eval_seconds = time.perf_counter() - t1
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "test_loss": round(test_loss, 6),
            "test_accuracy": round(test_accuracy, 4),
            "epoch_seconds": round(train_seconds, 3),
            "samples_per_second": round(n_train / train_seconds, 1),
            "eval_seconds": round(eval_seconds, 3),
        }
        history.append(row)
        log(
            f"epoch={epoch} train_loss={train_loss:.6f} test_loss={test_loss:.6f} "
            f"test_accuracy={test_accuracy:.4f} epoch_seconds={train_seconds:.3f} "
            f"samples_per_second={n_train / train_seconds:.1f}"
        )
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            raise FloatingPointError(
                f"loss is not finite at epoch {epoch} (train {train_loss}, test {test_loss}); "
                "try a lower --lr"
            )

        if checkpointing:
            save_atomic(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "shuffle": shuffle_gen.get_state(),
                        "cuda": torch.cuda.get_rng_state() if use_cuda else None,
                    },
                    "history": history,
                    "args": {**run_args, "epochs": args.epochs},
                },
                ckpt_path,
                torch,
            )

    if start_epoch >= args.epochs:
        log(
            f"checkpoint already holds {start_epoch} epochs (>= --epochs {args.epochs}): "
            "writing the model only"
        )
    final = {k: history[-1][k] for k in METRIC_KEYS} if history else {}
    metrics = {**final, "epochs": len(history), "history": history}
    write_json_atomic(metrics, os.path.join(p["output_data"], "metrics.json"))

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_atomic(state, os.path.join(p["model"], "model.pt"), torch)
    write_json_atomic(
        {
            "architecture": ARCHITECTURE,
            "class": "model.Net",
            "state_dict": "model.pt",
            "input_shape": list(INPUT_SHAPE),
            "num_classes": NUM_CLASSES,
            "normalization": {"mean": [MNIST_MEAN], "std": [MNIST_STD]},
            "output": "log_softmax",
            "torch_version": torch.__version__,
            "epochs": len(history),
            "metrics": final,
            "hyperparameters": {k: v for k, v in run_args.items() if k != "epochs"},
        },
        os.path.join(p["model"], "model.json"),
    )
    log(f"wrote {p['model']}/model.pt, model.json and {p['output_data']}/metrics.json")


def main(argv=None):
    p = paths()
    try:
        args, unknown = parse_args(argv)
        if unknown:
            log(f"warning: ignoring unknown arguments: {' '.join(unknown)}")
        train(args, p)
    except UsageError as exc:
        write_failure(p["failure"], f"{type(exc).__name__}: {exc}\n")
        log(f"error: {exc}", sys.stderr)
        return 1
    except Exception as exc:
        tb = traceback.format_exc()
        write_failure(p["failure"], f"{type(exc).__name__}: {exc}\n\n{tb}")
        log(tb, sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
