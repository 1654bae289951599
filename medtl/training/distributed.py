"""One training on several processes (``torchrun --nproc-per-node N -m medtl train ...``): DistributedDataParallel,
NCCL between GPUs (one per process, ``cuda:LOCAL_RANK``), gloo on CPU.

Every process holds the whole data set in memory and draws the same shuffled batches from the same seed; each
trains on its share of every batch (rank ``r`` of ``N`` takes images ``r, r+N, ...``: a distributed sampler over
the in-memory tensors), so the global batch is the single-process one and DDP averages the gradients. Augmentation is
drawn for the whole batch before it is shared out, so every process's random stream stays the same. Only rank 0
writes the run directory (one directory, one checkpoint); the others read it (a resume) but never write or lock it.

What differs from one process: BatchNorm normalises each process's share with its own statistics (``--sync-bn``:
over the whole batch, GPUs only); the running statistics and the logged training loss are rank 0's."""
from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError
from ..rundir import RunDir


def world() -> int:
    """Processes in this training (torchrun's ``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if world() > 1 else 0


def setup(device: torch.device) -> torch.device:
    """Join the process group torchrun started (once) and return this process's device: ``cuda:LOCAL_RANK`` on
    GPUs, ``device`` otherwise; without torchrun, ``device`` unchanged."""
    if world() == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return device


def wrap(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """``model`` in DistributedDataParallel (with SyncBatchNorm when asked); the model itself without torchrun."""
    if world() == 1:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU); drop it.")
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BatchNorm layers in place, same parameters
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def from_rank_zero(value):
    """Rank 0's ``value`` on every rank: a choice made from a measurement (the timed steps behind --time-limit)
    differs between processes, and ranks that chose different schedules would wait on each other forever."""
    if world() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)  # between this training's own processes
    return box[0]


def share() -> slice:
    """This process's share of a batch (all of it without torchrun)."""
    return slice(rank(), None, world())


def on_rank_zero(fn: Callable):
    """``fn()`` on rank 0 (its result; None on the others), every rank waiting until it is done."""
    result = fn() if rank() == 0 else None
    if world() > 1:
        dist.barrier()
    return result


def one_run(make: Callable[[], RunDir]) -> RunDir:
    """The run directory ``make`` creates (or opens), made by rank 0 only; the other ranks get its path from rank 0
    (after :func:`setup`) and a read-only view of it."""
    if world() == 1:
        return make()
    path = [str(make().path) if rank() == 0 else None]
    dist.broadcast_object_list(path, src=0)
    return view(path[0])


def view(path) -> RunDir:
    """An existing run directory as this rank sees it: rank 0 writes it, the others only read it."""
    return RunDir(path) if rank() == 0 else Replica(path)


class Replica(RunDir):
    """The run directory as ranks other than 0 see it: they read it (a resume's config and checkpoint, the final
    metrics) but never write or lock it; rank 0 does both, and writes the final artefacts alone."""

    @contextmanager
    def lock(self):
        yield

    def _written_by_rank_zero(self, *args, **kwargs) -> None:
        return None

    save_config = write_json = write_skipped = write_history = append_history = save_checkpoint = \
        remove_partial_writes = _written_by_rank_zero
