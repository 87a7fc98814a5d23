"""The distillation loop: batches, early stopping on validation, fixed seeds, per-epoch metrics;
``multi_stage`` chains two runs through a teacher assistant.

It does not reuse ``onnxcompress.models.training.fit``: that loop's loss sees only the model's
outputs and the labels, while distillation losses also need the batch's inputs (teacher outputs,
input-gradient maps) and the student's internals (hidden states).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from onnxcompress import progress
from onnxcompress.distill import distributed, strategies
from onnxcompress.errors import UsageError

Data = tuple[Any, Any]  # (inputs: array/tensor or dict of them, labels: array/tensor or None)
TEACHER_CACHE_SHARE = 1 / 3  # of physical memory: larger teacher outputs are recomputed every batch, not held
BUCKET_BATCHES = 50  # with sample lengths, batches are cut from this many batches' samples sorted by length (as group_by_length does)


@dataclasses.dataclass
class EpochMetrics:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float


@dataclasses.dataclass
class DistillResult:
    """The trained student (best validation epoch restored) and the metrics of every epoch."""

    student: torch.nn.Module
    history: list[EpochMetrics]
    best_epoch: int


def distill(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    data: Data,
    *,
    strategy: str | strategies.Standard = "standard",
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    val: Data | None = None,
    patience: int | None = None,
    weight_decay: float = 1e-4,
    seconds: float | None = None,
    start_from_student: bool = False,
    lengths: np.ndarray | None = None,
    **strategy_options: Any,
) -> DistillResult:
    """Train ``student`` to mimic ``teacher`` on ``data``; stop early when validation loss stalls ``patience`` epochs,
    or after the epoch in which ``seconds`` of training have passed. With ``start_from_student`` (a student that
    already does the job, being fine-tuned), the student as given competes as epoch 0 for the best validation loss,
    so training that only makes it worse is undone (``best_epoch`` 0). Under ``torchrun`` the processes share
    every batch (``distributed``). With per-sample ``lengths`` (real tokens of padded text), each batch is drawn
    from samples of similar length, so a model that cuts its batch to the longest wastes little on padding."""
    distributed.start()
    torch.manual_seed(seed)
    inputs, labels = as_tensors(data)
    if num_samples(inputs) == 0:
        raise UsageError("the distillation dataset is empty")
    loss_of = strategies.build(strategy, teacher, **strategy_options) if isinstance(strategy, str) else strategy
    probe = take(inputs, torch.arange(min(2, num_samples(inputs))))
    teacher_probe = check_output_shapes(teacher, student, probe)
    loss_of.prepare(student, probe)
    optimizer = torch.optim.AdamW([*student.parameters(), *loss_of.parameters()], lr=lr, weight_decay=weight_decay, fused=True)
    steps = epochs * -(-num_samples(inputs) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    generator = torch.Generator().manual_seed(seed)
    batches = BatchOrder(num_samples(inputs), batch_size, generator, None if lengths is None else torch.as_tensor(lengths))
    val_tensors = as_tensors(val) if val is not None else None
    rows, val_rows = num_samples(inputs), num_samples(val_tensors[0]) if val_tensors else 0
    held_as = held_dtype(teacher_probe, (rows if loss_of.cache_teacher else 0) + val_rows)
    cached = loss_of.cache_teacher and held_as is not None
    teacher_out = teacher_outputs(teacher, inputs, batches.by_length(), held_as) if cached else None
    val_teacher = (teacher_outputs(teacher, val_tensors[0], torch.arange(val_rows).split(batch_size), held_as)
                   if val_tensors and held_as is not None else None)
    history: list[EpochMetrics] = []
    start_loss = evaluate(student, loss_of, *val_tensors, val_teacher, batch_size)[0] if val_tensors and start_from_student else float("inf")
    best = (start_loss, 0, copy.deepcopy(student.state_dict()))  # epoch 0: the student as given
    eta = progress.Eta(epochs)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_loss = _train_epoch(student, loss_of, (inputs, labels, teacher_out), batches, optimizer, schedule)
        val_loss, val_acc = evaluate(student, loss_of, *val_tensors, val_teacher, batch_size) if val_tensors else (None, None)
        history.append(EpochMetrics(epoch, train_loss, val_loss, val_acc, time.perf_counter() - start))
        held = f", held-out loss {val_loss:.4f}" if val_loss is not None else ""
        progress.log(f"distilling: epoch {epoch}/{epochs}, loss {train_loss:.4f}{held} (ETA {eta.remaining(epoch)})")
        score = val_loss if val_loss is not None else train_loss
        if score < best[0]:
            best = (score, epoch, copy.deepcopy(student.state_dict()))
        elif patience is not None and epoch - best[1] >= patience:
            break
        if seconds is not None and time.perf_counter() - started >= seconds:
            break
    student.load_state_dict(best[2])
    return DistillResult(student.eval(), history, best[1])


def multi_stage(teacher: torch.nn.Module, assistant: torch.nn.Module, student: torch.nn.Module, data, **distill_options: Any):
    """Teacher → assistant → student (Mirzadeh et al.'s teacher assistant): two runs, returns both results.

    The assistant, between the two in size, bridges a capacity gap too wide for one step.
    """
    first = distill(teacher, assistant, data, **distill_options)
    second = distill(first.student, student, data, **distill_options)
    return first, second


def teacher_outputs(teacher: torch.nn.Module, inputs, batches: list[torch.Tensor], dtype: torch.dtype) -> HeldOutputs:
    """The teacher's outputs for every row (computed once in eval mode, on the row ``batches``), held in ``dtype``
    in one tensor filled batch by batch (joining a list of them would hold the outputs twice at the peak)."""
    teacher.eval()
    held = None
    with torch.no_grad():
        for index in batches:
            out = strategies.forward(teacher, take(inputs, index))
            held = held if held is not None else HeldOutputs(out.new_empty((num_samples(inputs), *out.shape[1:]), dtype=dtype), out.dtype)
            held.values[index] = out.to(dtype)
    return held


@dataclasses.dataclass
class HeldOutputs:
    """The teacher's outputs held for every row, read back (``outputs[rows]``) in their own ``dtype``."""

    values: torch.Tensor
    dtype: torch.dtype

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return self.values[index].to(self.dtype)


def evaluate(student, loss_of: strategies.Standard, inputs, labels, teacher_out, batch_size: int) -> tuple[float, float | None]:
    """Mean output loss against the teacher's outputs (``teacher_out``, or computed batch by batch when None) and,
    for class labels, top-1 accuracy."""
    student.eval()
    total, correct, n = 0.0, 0, num_samples(inputs)
    with torch.no_grad():
        for index in torch.arange(n).split(batch_size):
            x, y = take(inputs, index), None if labels is None else labels[index]
            out = strategies.forward(student, x)
            known = strategies.forward(loss_of.teacher, x) if teacher_out is None else teacher_out[index]
            total += float(loss_of.output_loss(out, known, y)) * len(index)
            if y is not None and y.dim() == 1:
                correct += int((out.argmax(dim=1) == y).sum())
    accuracy = correct / n if labels is not None and labels.dim() == 1 else None
    return total / n, accuracy


def held_dtype(teacher_probe: torch.Tensor, samples: int) -> torch.dtype | None:
    """The dtype the teacher's outputs on ``samples`` rows (``teacher_probe``: its output on a few) are held in:
    their own when they fit in ``TEACHER_CACHE_SHARE`` of the machine's memory, else bfloat16 when that fits (half
    the bytes; its 3 significant digits leave an error far below any distillation loss), else None: recomputed
    every batch. MiniLM's 12 matched hidden states at 32 tokens take 0.6 MB a sentence in float32."""
    elements = teacher_probe[0].numel() * samples
    for dtype in (teacher_probe.dtype, torch.bfloat16):
        if elements * dtype.itemsize <= TEACHER_CACHE_SHARE * physical_memory():
            return dtype
    return None


def physical_memory() -> int:
    """The machine's memory in bytes (8 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


def check_output_shapes(teacher: torch.nn.Module, student: torch.nn.Module, inputs) -> torch.Tensor:
    """The teacher's output on ``inputs``; a one-line ``UsageError`` when the student's output shape is not the teacher's."""
    with torch.no_grad():
        t_out = strategies.forward(teacher.eval(), inputs)
        t_shape = tuple(t_out.shape)
        s_shape = tuple(strategies.forward(student.eval(), inputs).shape)
    if t_shape != s_shape:
        raise UsageError(f"student output shape {s_shape} does not match the teacher's {t_shape}")
    return t_out


def as_tensors(data: Data) -> tuple[Any, torch.Tensor | None]:
    """(inputs, labels) as tensors; inputs may be a dict of named tensors."""
    inputs, labels = data
    if isinstance(inputs, Mapping):
        inputs = {k: torch.as_tensor(np.asarray(v)) for k, v in inputs.items()}
    else:
        inputs = torch.as_tensor(np.asarray(inputs))
    return inputs, None if labels is None else torch.as_tensor(np.asarray(labels))


def num_samples(inputs) -> int:
    """Rows in a tensor or in the first of named tensors."""
    if isinstance(inputs, Mapping):
        return len(next(iter(inputs.values()))) if inputs else 0
    return len(inputs)


def take(inputs, index: torch.Tensor):
    """The rows ``index`` of a tensor or of every named tensor."""
    return {k: v[index] for k, v in inputs.items()} if isinstance(inputs, Mapping) else inputs[index]


def _train_epoch(student, loss_of, data, batches: BatchOrder, optimizer, schedule) -> float:
    """One pass over the shuffled batches; in a distributed run each rank trains on its share of every batch
    (its loss weighted by the share's size) and the summed gradients make one step on the whole batch."""
    inputs, labels, teacher_out = data
    student.train()
    total, n = 0.0, num_samples(inputs)
    trained = [*student.parameters(), *loss_of.parameters()]
    for batch in batches.epoch():
        index = distributed.share(batch)
        optimizer.zero_grad()
        if len(index):
            known = None if teacher_out is None else teacher_out[index]
            loss = loss_of.loss(student, take(inputs, index), None if labels is None else labels[index], known) * (len(index) / len(batch))
            loss.backward()
        distributed.sum_gradients(trained)
        optimizer.step()
        schedule.step()
        total += distributed.sum_value(float(loss.detach()) if len(index) else 0.0) * len(batch)
    return total / n


@dataclasses.dataclass
class BatchOrder:
    """The sample indices of every batch of an epoch, shuffled by ``generator``; with ``lengths``, each batch's
    samples are of similar length (sorted within ``BUCKET_BATCHES`` batches' worth of shuffled samples, the
    batches then shuffled)."""

    samples: int
    batch_size: int
    generator: torch.Generator
    lengths: torch.Tensor | None = None

    def by_length(self) -> list[torch.Tensor]:
        """Every sample once, in batches of similar length when lengths are known (for the teacher's outputs)."""
        order = torch.arange(self.samples) if self.lengths is None else torch.argsort(self.lengths, descending=True, stable=True)
        return list(order.split(self.batch_size))

    def epoch(self) -> list[torch.Tensor]:
        """One epoch's batches."""
        order = torch.randperm(self.samples, generator=self.generator)
        if self.lengths is None:
            return list(order.split(self.batch_size))
        chunks = [chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)] for chunk in order.split(self.batch_size * BUCKET_BATCHES)]
        batches = [batch for chunk in chunks for batch in chunk.split(self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=self.generator)]
