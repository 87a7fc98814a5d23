"""Data-parallel training on ``torch.distributed``: every process started by ``torchrun`` runs the same
chain, and the distillation loop splits each batch across them.

Each rank draws the same shuffled batches (one seed), trains on its strided share of every batch, and
the gradients are summed across ranks weighted by each share's size, so one optimizer step sees the
gradient of the whole batch: the weights follow the single-process run on the same data order (to
float rounding). ``gloo`` on CPU, ``nccl`` where CUDA is available. Started by ``torchrun`` (it sets
``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``/``MASTER_PORT``); a single process needs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist

from onnxcompress.errors import UsageError


def world_size() -> int:
    """Processes in the run: ``WORLD_SIZE`` set by ``torchrun``, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes") from None


def rank() -> int:
    """This process's rank (0 outside a distributed run): rank 0 alone writes files."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0") or 0)


def active() -> bool:
    """Whether a process group is up and holds more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def start() -> bool:
    """Join the process group ``torchrun`` describes (once); False in a single-process run."""
    if world_size() == 1 or active():
        return active()
    if not dist.is_available():
        raise UsageError("this PyTorch build has no torch.distributed; run in one process")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    try:
        dist.init_process_group(backend=backend)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"cannot join the {backend} process group torchrun describes: {str(exc).splitlines()[0]}") from None
    return True


def share(index: torch.Tensor) -> torch.Tensor:
    """This rank's part of one batch's sample indices (every ``world``-th, from ``rank``)."""
    return index[dist.get_rank()::dist.get_world_size()] if active() else index


def sum_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient across ranks (each already weighted by its share of the batch); a
    parameter no rank computed a gradient for keeps none, as in one process (the optimizer skips it)."""
    if not active():
        return
    parameters = list(parameters)
    computed = torch.tensor([p.grad is not None for p in parameters], dtype=torch.uint8)
    dist.all_reduce(computed, op=dist.ReduceOp.MAX)
    for parameter, anywhere in zip(parameters, computed.tolist()):
        if not anywhere:
            continue
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)


def sum_value(value: float) -> float:
    """``value`` summed across ranks (a batch's loss from its shares)."""
    if not active():
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return float(total[0])
