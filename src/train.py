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


class World:
    """This process's place among the training processes, and the process group's helpers.

    size 1 means no process group: every helper is then a no-op and train() runs exactly
    the single-process code.
    """

    def __init__(self, rank=0, size=1, local_rank=0, launcher=None):
        self.rank, self.size, self.local_rank, self.launcher = rank, size, local_rank, launcher
        self.dist = None  # torch.distributed once the group exists

    @property
    def main(self):
        return self.rank == 0

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        if env.get("RANK") and env.get("WORLD_SIZE"):
            # torchrun's worker environment (torch.distributed.run / torch elastic agent).
            try:
                rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
                local_rank = int(env.get("LOCAL_RANK") or 0)
            except ValueError as exc:
                raise UsageError(f"RANK / WORLD_SIZE / LOCAL_RANK are not integers: {exc}") from exc
            if not 0 <= rank < size:
                raise UsageError(f"RANK {rank} is outside WORLD_SIZE {size}")
            return cls(rank, size, local_rank, "torchrun")
        if not env.get("SM_HOSTS"):
            return cls()
        try:
            hosts = json.loads(env["SM_HOSTS"])
        except ValueError as exc:
            raise UsageError(f"SM_HOSTS is not a JSON list: {env['SM_HOSTS']!r}") from exc
        if not isinstance(hosts, list) or len(hosts) <= 1:
            return cls()
        current = env.get("SM_CURRENT_HOST")
        if current not in hosts:
            raise UsageError(f"SM_CURRENT_HOST {current!r} is not in SM_HOSTS {hosts}")
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
        if missing:
            raise UsageError(
                f"SM_HOSTS lists {len(hosts)} hosts but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} unset: the SageMaker PyTorch image "
                "sets them (the first host, port 7777); elsewhere set them to the first "
                "host's address and a free port, or run one host"
            )
        # The toolkit's plain runner: one process per host, ranked by the host list's order
        # (resourceconfig.json's "hosts", which the toolkit does not re-sort).
        return cls(hosts.index(current), len(hosts), 0, "SM_HOSTS")

    def init(self, backend, use_cuda, torch):
        if self.size == 1:
            return None
        import torch.distributed as dist

        if not dist.is_available():
            raise UsageError("this torch build has no torch.distributed; run one process")
        if backend == "auto":
            backend = "nccl" if use_cuda else "gloo"
        if backend == "nccl" and not use_cuda:
            raise UsageError("--dist-backend nccl needs CUDA; use gloo (or auto) on CPU")
        if use_cuda:
            torch.cuda.set_device(self.local_rank)  # nccl binds a rank to the current device
        # env:// reads MASTER_ADDR / MASTER_PORT; rank and size are passed explicitly so the
        # per-host runner (no RANK / WORLD_SIZE variables) works too.
        dist.init_process_group(backend, init_method="env://", rank=self.rank, world_size=self.size)
        self.dist = dist
        return backend

    def gather(self, obj):
        """Every rank's obj, in rank order (all ranks get the list)."""
        if self.dist is None:
            return [obj]
        out = [None] * self.size
        self.dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj, src=0):
        if self.dist is None:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=src)
        return box[0]

    def close(self):
        if self.dist is not None and self.dist.is_initialized():
            try:
                self.dist.destroy_process_group()
            except Exception as exc:  # a peer already gone: nothing left to release cleanly
                log(f"warning: destroy_process_group failed: {exc}", sys.stderr)
        self.dist = None


def log(msg, stream=None):
    print(msg, file=stream or sys.stdout, flush=True)


def write_failure(path, text, world=None, started=None):
    mode = "w"
    if world is not None and world.size > 1:
        text = f"rank {world.rank} of {world.size}: {text}"
        # Ranks of one host share its failure file; a rank that fails because a peer died
        # must not hide the reason of the rank that failed first (SageMaker shows the first
        # 1024 characters as FailureReason).
        try:
            if started is not None and os.path.getmtime(path) >= started:
                mode = "a"
        except OSError:
            pass
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
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


def agree_on_checkpoint(ckpt, world):
    """The checkpoint every rank resumes from: its own copy when all copies hold the same
    epoch (SageMaker restores the checkpoint prefix to every instance), else the newest one,
    sent by the lowest rank that has it (a host whose checkpoint dir was not restored)."""
    epochs = world.gather(-1 if ckpt is None else int(ckpt["epoch"]))  # also the barrier:
    # no rank writes a new checkpoint before every rank has read its own.
    if len(set(epochs)) == 1:
        return ckpt
    src = epochs.index(max(epochs))
    if world.rank != src:
        mine = epochs[world.rank]
        mine = "no checkpoint" if mine < 0 else f"a checkpoint at epoch {mine}"
        log(f"warning: rank {world.rank}: {mine} here, resuming from rank {src}'s at epoch "
            f"{epochs[src]}")
    return world.broadcast(ckpt if world.rank == src else None, src=src)


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

    from mnist_data import MNIST_MEAN, MNIST_STD, MnistDataError, load_split
    from model import ARCHITECTURE, INPUT_SHAPE, NUM_CLASSES, Net

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
    sampler = None
    if world.size > 1:
        from torch.utils.data import DistributedSampler

        # Only len() of the dataset is used: the sampler yields this rank's share of a
        # permutation seeded by (seed, epoch), padded so every rank has as many samples.
        sampler = DistributedSampler(
            range(n_train), num_replicas=world.size, rank=world.rank, shuffle=True,
            seed=args.seed, drop_last=False,
        )
    if world.main:
        share = ""
        if sampler is not None:
            share = f"; {sampler.num_samples} per rank, global batch {args.batch_size * world.size}"
        log(f"data {p['data']}: {n_train} train / {x_test.shape[0]} test samples{share}")

    if world.main:
        for d in (p["model"], p["output_data"]):
            os.makedirs(d, exist_ok=True)
    ckpt_path = os.path.join(p["checkpoint"], CHECKPOINT_NAME)
    # Rank 0 alone writes checkpoints; the others only read them.
    checkpointing = world.broadcast(prepare_checkpoint_dir(p["checkpoint"]) if world.main else None)

    torch.manual_seed(args.seed)
    shuffle_gen = torch.Generator().manual_seed(args.seed)
    net = Net().to(device)
    model = net
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Same initial weights on every rank (same seed; DDP also broadcasts rank 0's), then
        # a per-rank stream so the ranks' dropout masks differ.
        torch.manual_seed(args.seed + world.rank)
        model = DistributedDataParallel(net, device_ids=[world.local_rank] if use_cuda else None)
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
    run_args = {k: getattr(args, k) for k in CHECKPOINT_ARGS}

    ckpt = None
    if checkpointing and os.path.exists(ckpt_path):
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if world.size > 1:
        ckpt = agree_on_checkpoint(ckpt, world)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        ckpt_world = ckpt.get("world_size", 1)
        if world.size > 1 and ckpt_world == world.size and rng.get("ranks"):
            rng = rng["ranks"][world.rank]
        elif world.size > 1:
            torch.manual_seed(args.seed + world.rank + 7919 * ckpt["epoch"])
            rng = {}
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"])
        if rng.get("shuffle") is not None:
            shuffle_gen.set_state(rng["shuffle"])
        if use_cuda and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"])
        if ckpt_world != world.size and world.main:
            log(
                f"warning: checkpoint was written by {ckpt_world} process(es), resuming with "
                f"{world.size}: data order and dropout differ from an uninterrupted run"
            )
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        run_args.update({k: v for k, v in ckpt.get("args", {}).items() if k in CHECKPOINT_ARGS})
        changed = {
            k: (v, getattr(args, k))
            for k, v in run_args.items()
            if k != "epochs" and getattr(args, k) != v
        }
        if changed and world.main:
            log(
                "warning: checkpoint was written with other hyperparameters: "
                + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            )
        log(f"resuming from checkpoint at epoch {start_epoch}")

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
        if world.dist is not None:
            # Every rank has the same number of batches (the sampler pads), so the mean of
            # the sum is the mean batch loss over all ranks; the all-reduce also makes rank
            # 0's epoch time that of the slowest rank.
            world.dist.all_reduce(loss_sum)
        train_loss = loss_sum.item() / (batches * world.size)
        if use_cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        scheduler.step()

        t1 = time.perf_counter()
        if world.main:
            test_loss, test_accuracy = evaluate(net, x_test, y_test, args.test_batch_size, torch, F)
        if world.dist is not None:
            # Rank 0 evaluated the whole test set; every rank needs the figures to stop on
            # the same non-finite loss.
            figures = torch.zeros(2, dtype=torch.float64, device=device)
            if world.main:
                figures += torch.tensor([test_loss, test_accuracy], dtype=torch.float64,
                                        device=device)
            world.dist.broadcast(figures, src=0)
            test_loss, test_accuracy = figures.tolist()
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

        ranks_rng = None
        if checkpointing and world.size > 1:
            # Each rank's own RNG streams (dropout), so a resume continues every rank exactly.
            ranks_rng = world.gather({
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if use_cuda else None,
            })
        if checkpointing and world.main:
            extra = {} if ranks_rng is None else {"world_size": world.size}
            save_atomic(
                {
                    **extra,
                    "epoch": epoch,
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "shuffle": shuffle_gen.get_state(),
                        "cuda": torch.cuda.get_rng_state() if use_cuda else None,
                        **({} if ranks_rng is None else {"ranks": ranks_rng}),
                    },
                    "history": history,
                    "args": {**run_args, "epochs": args.epochs},
                },
                ckpt_path,
                torch,
            )

    if not world.main:
        return
    if start_epoch >= args.epochs:
        log(
            f"checkpoint already holds {start_epoch} epochs (>= --epochs {args.epochs}): "
            "writing the model only"
        )
    final = {k: history[-1][k] for k in METRIC_KEYS} if history else {}
    metrics = {**final, "epochs": len(history), "history": history}
    write_json_atomic(metrics, os.path.join(p["output_data"], "metrics.json"))

    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
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
