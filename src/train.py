"""Train the PyTorch examples MNIST CNN; entry point for the SageMaker training toolkit.

Script mode: hyperparameters arrive as ``--key value`` arguments, paths as SM_* environment
variables (SageMaker's defaults apply when they are unset). Per epoch it prints one line

    epoch=1 train_loss=0.312456 test_loss=0.102345 test_accuracy=0.9670 \
        epoch_seconds=3.214 samples_per_second=1244.6      (a single line)

(epoch_seconds is the training time of the epoch, evaluation excluded, so
samples_per_second = training samples / epoch_seconds), writes metrics.json to the output
data dir, model.pt + model.json to the model dir, and a checkpoint per epoch from which an
interrupted run resumes. On error it writes the reason to the failure file and exits 1.

Several processes (DistributedDataParallel). The world comes from the launcher:

* under torchrun (``torch.distributed.run``, which the SageMaker PyTorch image starts on every
  host with ``distribution={"torch_distributed": {"enabled": True}}``; sagemaker-training-toolkit
  torch_distributed.py), RANK, WORLD_SIZE and LOCAL_RANK come from torchrun's environment;
* without torchrun on several hosts (the toolkit's plain per-host runner), rank is
  SM_HOSTS.index(SM_CURRENT_HOST) and the world is len(SM_HOSTS), one process per host; the
  launcher sets MASTER_ADDR / MASTER_PORT (sagemaker-pytorch-training-toolkit training.py sets
  the first host and 7777; sm-pytest sets 127.0.0.1 and a free port locally).

World size 1 (none of those variables, or one host) makes no process group at all and runs
exactly the single-process code. Otherwise: gloo on CPU, nccl on CUDA (``--dist-backend``
overrides it, e.g. gloo when several local hosts share one GPU), ``init_process_group`` with
``env://``, a seeded DistributedSampler (``set_epoch`` each epoch; the same seed and world
size give the same run), dropout seeded per rank. Rank 0 alone prints the epoch line, writes
the model, metrics.json and checkpoints; train_loss is averaged over every rank, and rank 0
evaluates the whole test set (exact, the same figures as one process would compute for the
same weights) and broadcasts them, so every rank stops on the same non-finite loss. Every
rank reads the checkpoint on resume (the newest one if the hosts' copies differ). A rank that
fails writes the failure file of its own host's tree, prefixed with its rank.

``--batch-size`` is per process: the global batch of one optimizer step is
batch-size x world size, and an epoch has world-size times fewer steps. The learning rate is
not rescaled for you. To keep the run of one process, divide --batch-size by the world size;
to keep a bigger global batch with the same per-sample step, scale --lr by the world size
(the linear scaling rule, Goyal et al. 2017, "Accurate, Large Minibatch SGD", made for SGD;
for the default Adadelta, whose steps are normalised by its running gradient RMS, it is only
a starting point to tune from). samples_per_second counts every rank's samples.

This file is the entry point: arguments, paths, the training loop and the metric lines.
Beside it in the code dir, each with one job: distributed.py (the world: rank, size, the
process group and its collectives), checkpoints.py (save and resume, per-rank RNG state),
outputs.py (metrics.json, model.pt, model.json), report.py (log lines, UsageError, the
failure file), model.py (the network) and mnist_data.py (the IDX files). torch is imported
only once training starts, so argument errors come back at once.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import sys
import time
import traceback

import checkpoints
from distributed import World
from outputs import write_outputs
from report import UsageError, log, write_failure

DEFAULT_DATA_DIR = "/opt/ml/input/data/training"
DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_OUTPUT_DATA_DIR = "/opt/ml/output/data"
DEFAULT_CHECKPOINT_DIR = "/opt/ml/checkpoints"


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
    p.add_argument(
        "--dist-backend",
        "--dist_backend",
        dest="dist_backend",
        choices=("auto", "gloo", "nccl"),
        default="auto",
        help="process-group backend with several processes (auto: nccl on CUDA, else gloo)",
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


def train(args, p, world=None):
    world = world or World()
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

    from mnist_data import MnistDataError, load_split
    from model import Net

    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    if use_cuda and world.size > 1:
        device = torch.device("cuda", world.local_rank)
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
    backend = world.init(args.dist_backend, use_cuda, torch)
    if backend:
        setup += f", rank {world.rank} of {world.size} ({backend}, from {world.launcher})"
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
    sampler = world.sampler(n_train, args.seed)  # None with one process
    if world.main:
        share = ""
        if sampler is not None:
            share = f"; {sampler.num_samples} per rank, global batch {args.batch_size * world.size}"
        log(f"data {p['data']}: {n_train} train / {x_test.shape[0]} test samples{share}")

    if world.main:
        for d in (p["model"], p["output_data"]):
            os.makedirs(d, exist_ok=True)
    ckpt_path = os.path.join(p["checkpoint"], checkpoints.CHECKPOINT_NAME)
    # Rank 0 alone writes checkpoints; the others only read them.
    checkpointing = world.broadcast(
        checkpoints.prepare_checkpoint_dir(p["checkpoint"]) if world.main else None
    )

    torch.manual_seed(args.seed)
    shuffle_gen = torch.Generator().manual_seed(args.seed)
    net = Net().to(device)
    if world.size > 1:
        # Same initial weights on every rank (same seed; DDP also broadcasts rank 0's), then
        # a per-rank stream so the ranks' dropout masks differ.
        torch.manual_seed(args.seed + world.rank)
    model = world.wrap(net, use_cuda)  # net itself with one process
    optimizer = torch.optim.Adadelta(net.parameters(), lr=args.lr, foreach=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=args.gamma)
    scaler = None
    if amp_dtype is torch.float16:
        if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
            scaler = torch.amp.GradScaler("cuda")
        else:
            scaler = torch.cuda.amp.GradScaler()
    history, start_epoch = [], 0
    # Hyperparameters the run started with; a resumed run keeps reporting those.
    run_args = {k: getattr(args, k) for k in checkpoints.CHECKPOINT_ARGS}
    state = {"model": net, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}

    ckpt = checkpoints.load(ckpt_path, checkpointing, world, torch)
    if ckpt is not None:
        history, start_epoch = checkpoints.restore(
            ckpt, args, run_args, state, shuffle_gen, world, use_cuda, torch
        )

    per_rank = n_train if sampler is None else sampler.num_samples
    batches = math.ceil(per_rank / args.batch_size)
    for epoch in range(start_epoch + 1, args.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        if use_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if sampler is None:
            perm = torch.randperm(n_train, generator=shuffle_gen).to(device)
        else:
            sampler.set_epoch(epoch)
            perm = torch.tensor(list(sampler), dtype=torch.int64, device=device)
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
            if args.log_interval and (i + 1) % args.log_interval == 0 and world.main:
                log(f"train epoch {epoch} batch {i + 1}/{batches} loss {loss.item():.6f}")
        # Every rank has the same number of batches (the sampler pads), so the mean of the
        # sum is the mean batch loss over all ranks; the all-reduce also makes rank 0's
        # epoch time that of the slowest rank. A no-op with one process.
        world.all_reduce(loss_sum)
        train_loss = loss_sum.item() / (batches * world.size)
        if use_cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        scheduler.step()

        t1 = time.perf_counter()
        test_loss = test_accuracy = None
        if world.main:
            test_loss, test_accuracy = evaluate(net, x_test, y_test, args.test_batch_size, torch, F)
        # Rank 0 evaluated the whole test set; every rank needs the figures to stop on the
        # same non-finite loss.
        test_loss, test_accuracy = world.broadcast_floats(
            (test_loss, test_accuracy), device, torch
        )
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
        if world.main:
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
            checkpoints.save(
                ckpt_path, epoch, args, run_args, state, shuffle_gen, history, world, use_cuda,
                torch,
            )

    if not world.main:
        return
    if start_epoch >= args.epochs:
        log(
            f"checkpoint already holds {start_epoch} epochs (>= --epochs {args.epochs}): "
            "writing the model only"
        )
    write_outputs(p, net, history, run_args, torch)


def main(argv=None):
    p = paths()
    started = time.time()
    world = None
    try:
        world = World.from_env()
        args, unknown = parse_args(argv)
        if unknown and world.main:
            log(f"warning: ignoring unknown arguments: {' '.join(unknown)}")
        train(args, p, world)
    except UsageError as exc:
        write_failure(p["failure"], f"{type(exc).__name__}: {exc}\n", world, started)
        log(f"error: {exc}", sys.stderr)
        return 1
    except Exception as exc:
        tb = traceback.format_exc()
        write_failure(p["failure"], f"{type(exc).__name__}: {exc}\n\n{tb}", world, started)
        log(tb, sys.stderr)
        return 1
    finally:
        # After the failure file: a hang here must not lose the reason.
        if world is not None:
            world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
