"""A plain supervised training loop on CPU: Adam, shuffled mini-batches, optional early stopping.

Deterministic for a given ``seed`` (batch order and any in-model randomness come from seeded
generators) and limited to two threads (by default) while it runs, so it behaves the same on the 2-core
machines the project targets. The distillation engine has its own loop because its losses need
more than a model's outputs and the labels.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import torch

from onnxcompress import progress
from onnxcompress.models.seeding import seeded

TRAIN_THREADS = 2
EVAL_BATCH = 512
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class History:
    """Per-epoch mean training loss and, with validation data, validation loss and accuracy."""

    train_loss: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_accuracy: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False


def fit(
    module: torch.nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    loss_fn: LossFn | None = None,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    x_val: np.ndarray | torch.Tensor | None = None,
    y_val: np.ndarray | torch.Tensor | None = None,
    patience: int | None = None,
    threads: int = TRAIN_THREADS,
) -> History:
    """Train ``module`` in place and return its history; it is left in eval mode.

    ``loss_fn(outputs, targets)`` defaults to cross-entropy. With validation data the weights of
    the epoch with the lowest validation loss are restored at the end, and ``patience`` stops
    training after that many epochs without improvement. ``threads`` caps torch's intra-op threads
    while training (1 is faster when other processes share the cores).
    """
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    validation = None if x_val is None or y_val is None else (torch.as_tensor(x_val), torch.as_tensor(y_val))
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    history, best = History(), (float("inf"), None)
    with _threads(threads), seeded(seed):
        order = torch.Generator().manual_seed(seed)
        eta = progress.Eta(epochs)
        for epoch in range(epochs):
            history.train_loss.append(_train_epoch(module, x, y, loss_fn, optimizer, batch_size, order))
            progress.log(f"training: epoch {epoch + 1}/{epochs}, loss {history.train_loss[-1]:.4f} (ETA {eta.remaining(epoch + 1)})")
            if validation is None:
                continue
            val_loss, val_acc = evaluate(module, *validation, loss_fn=loss_fn)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_acc)
            if val_loss < best[0]:
                best, history.best_epoch = (val_loss, copy.deepcopy(module.state_dict())), epoch
            elif patience is not None and epoch - history.best_epoch >= patience:
                history.stopped_early = True
                break
    if best[1] is not None:
        module.load_state_dict(best[1])
    module.eval()
    return history


def _train_epoch(module, x, y, loss_fn: LossFn, optimizer, batch_size: int, order: torch.Generator) -> float:
    """One pass over shuffled mini-batches; returns the sample-weighted mean loss."""
    module.train()
    total = 0.0
    for index in torch.randperm(len(x), generator=order).split(batch_size):
        optimizer.zero_grad()
        loss = loss_fn(module(x[index]), y[index])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
    return total / len(x)


def evaluate(module: torch.nn.Module, x, y, *, loss_fn: LossFn | None = None) -> tuple[float, float]:
    """Mean loss and top-1 accuracy of ``module`` on ``(x, y)``, in eval mode without gradients."""
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    module.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH):
            outputs = module(x[start : start + EVAL_BATCH])
            targets = y[start : start + EVAL_BATCH]
            total += float(loss_fn(outputs, targets)) * len(targets)
            correct += int((outputs.argmax(dim=1) == targets).sum())
    return total / len(x), correct / len(x)


def accuracy(module: torch.nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Top-1 accuracy of ``module`` on ``(x, y)``, in [0, 1]."""
    return evaluate(module, x, y)[1]


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """Limit torch's intra-op threads for the block, restoring the previous setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
