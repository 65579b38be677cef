"""The training processes' world: who this process is among them, and their process group.

World.from_env reads rank, world size and local rank from the launcher: torchrun's RANK /
WORLD_SIZE / LOCAL_RANK, else SM_HOSTS / SM_CURRENT_HOST (one process per host, ranked by the
host list's order; the launcher sets MASTER_ADDR / MASTER_PORT). World.init chooses the
backend (gloo on CPU, nccl on CUDA unless told otherwise) and makes the process group; close
destroys it. The collectives (gather, broadcast, all_reduce, broadcast_floats), the
DistributedSampler and the DistributedDataParallel wrapper are here too.

World size 1 makes no process group: every helper is then a no-op (or the identity) and the
caller runs exactly the single-process code. torch is imported only when a group is made.
"""

from __future__ import annotations

import json
import os
import sys

from report import UsageError, log


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

    def sampler(self, n, seed):
        """This rank's share of n samples (a DistributedSampler), or None in a world of one."""
        if self.size == 1:
            return None
        from torch.utils.data import DistributedSampler

        # Only len() of the dataset is used: the sampler yields this rank's share of a
        # permutation seeded by (seed, epoch), padded so every rank has as many samples.
        return DistributedSampler(
            range(n), num_replicas=self.size, rank=self.rank, shuffle=True,
            seed=seed, drop_last=False,
        )

    def wrap(self, net, use_cuda):
        """net in DistributedDataParallel, or net itself in a world of one."""
        if self.size == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net, device_ids=[self.local_rank] if use_cuda else None)

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

    def all_reduce(self, tensor):
        """Sum tensor over every rank, in place (a no-op without a group)."""
        if self.dist is not None:
            self.dist.all_reduce(tensor)

    def broadcast_floats(self, values, device, torch, src=0):
        """src's floats on every rank, exact (float64); values as given without a group.

        Every rank passes as many values; only src's are read.
        """
        if self.dist is None:
            return values
        figures = torch.zeros(len(values), dtype=torch.float64, device=device)
        if self.rank == src:
            figures += torch.tensor(values, dtype=torch.float64, device=device)
        self.dist.broadcast(figures, src=src)
        return figures.tolist()

    def close(self):
        if self.dist is not None and self.dist.is_initialized():
            try:
                self.dist.destroy_process_group()
            except Exception as exc:  # a peer already gone: nothing left to release cleanly
                log(f"warning: destroy_process_group failed: {exc}", sys.stderr)
        self.dist = None
