"""Checkpoints: one per epoch, from which an interrupted run resumes exactly.

A checkpoint (checkpoint.pt in the checkpoint dir, which SageMaker syncs with S3) holds the
model, optimizer, scheduler and grad scaler states, the RNG states (torch, the shuffle
generator, CUDA; with several processes every rank's own torch/CUDA streams too, so each
rank's dropout continues where it stopped), the history of epoch rows, and the
hyperparameters the run started with (a resumed run keeps reporting those).

Rank 0 alone writes; every rank reads its own copy, or the newest one when the hosts' copies
differ. A checkpoint written by another number of processes resumes the weights but reseeds
dropout per rank (data order and dropout then differ from an uninterrupted run). torch
arrives as an argument (imported by the caller).
"""

from __future__ import annotations

import os

from outputs import save_atomic
from report import log

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_ARGS = ("epochs", "lr", "batch_size", "gamma", "seed", "limit_train", "amp")


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


def load(path, checkpointing, world, torch):
    """The checkpoint this rank resumes from, or None (every rank must call it)."""
    ckpt = None
    if checkpointing and os.path.exists(path):
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if world.size > 1:
        ckpt = agree_on_checkpoint(ckpt, world)
    return ckpt


def restore(ckpt, args, run_args, state, shuffle_gen, world, use_cuda, torch):
    """Load ckpt into state's objects and the RNGs; update run_args with the checkpoint's.

    state: "model" (the bare network), "optimizer", "scheduler", "scaler" (or None).
    Returns (history, start_epoch).
    """
    state["model"].load_state_dict(ckpt["model"])
    state["optimizer"].load_state_dict(ckpt["optimizer"])
    state["scheduler"].load_state_dict(ckpt["scheduler"])
    if state["scaler"] is not None and ckpt.get("scaler"):
        state["scaler"].load_state_dict(ckpt["scaler"])
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
    return history, start_epoch


def save(path, epoch, args, run_args, state, shuffle_gen, history, world, use_cuda, torch):
    """Write the checkpoint of epoch (rank 0); every rank must call it, for its RNG state."""
    ranks_rng = None
    if world.size > 1:
        # Each rank's own RNG streams (dropout), so a resume continues every rank exactly.
        ranks_rng = world.gather({
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if use_cuda else None,
        })
    if not world.main:
        return
    extra = {} if ranks_rng is None else {"world_size": world.size}
    scaler = state["scaler"]
    save_atomic(
        {
            **extra,
            "epoch": epoch,
            "model": state["model"].state_dict(),
            "optimizer": state["optimizer"].state_dict(),
            "scheduler": state["scheduler"].state_dict(),
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
        path,
        torch,
    )
