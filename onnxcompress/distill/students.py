"""Student builders initialised from the teacher: layer dropping (DistilBERT) and width-reduced CNN copies.

Starting from the teacher's own weights, rather than from scratch, is what lets a student recover
most of the teacher's accuracy in a few epochs (Sanh et al., DistilBERT: one layer out of two).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from onnxcompress.errors import UsageError

LAYER_LIST_SUFFIXES = ("encoder.layer", "layers", "layer", "blocks")


def evenly_spaced(teacher_layers: int, student_layers: int) -> list[int]:
    """Which teacher layers to keep: every k-th from the first (6 → 3 keeps 0, 2, 4)."""
    if not 0 < student_layers <= teacher_layers:
        raise UsageError(f"a student needs between 1 and {teacher_layers} layers, not {student_layers}")
    step = teacher_layers / student_layers
    return [int(i * step) for i in range(student_layers)]


def find_layer_list(model: nn.Module) -> str:
    """Dotted name of the encoder's stack of layers (``encoder.layer`` for BERT-like models)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.endswith(LAYER_LIST_SUFFIXES):
            return name
    raise UsageError(f"{type(model).__name__} has no encoder layer list ({', '.join(LAYER_LIST_SUFFIXES)})")


def drop_layers(teacher: nn.Module, keep: Sequence[int] | int, *, layers: str | None = None) -> nn.Module:
    """A copy of ``teacher`` with only the layers ``keep`` (indices, or a count spaced evenly), weights copied."""
    student = copy.deepcopy(teacher)
    path = layers or find_layer_list(student)
    stack = student.get_submodule(path)
    indices = evenly_spaced(len(stack), keep) if isinstance(keep, int) else list(keep)
    if not indices or any(not 0 <= i < len(stack) for i in indices):
        raise UsageError(f"layer indices {indices} are outside the teacher's {len(stack)} layers")
    parent_name, _, attr = path.rpartition(".")
    parent = student.get_submodule(parent_name) if parent_name else student
    setattr(parent, attr, nn.ModuleList(stack[i] for i in indices))
    _update_layer_count(student, len(indices))
    return student


def narrow_copy(teacher: nn.Sequential, ratio: float) -> nn.Sequential:
    """A copy of a plain Conv/BN/Linear chain keeping ``ratio`` of each hidden conv's filters (largest L1 norm).

    The kept filters, their batch-norm entries and the matching input slices of the next layer are
    copied from the teacher; the final layer keeps all its outputs so the student's output shape matches.
    """
    if not 0 < ratio <= 1:
        raise UsageError(f"width ratio must be in (0, 1], not {ratio}")
    if any(isinstance(m, nn.Conv2d) and m.groups != 1 for m in teacher.modules()):
        raise UsageError("narrow_copy supports plain convolutions only (no grouped or depthwise convs)")
    student = copy.deepcopy(teacher)
    leaves = [m for m in student.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    kept: torch.Tensor | None = None
    channels = 0  # the teacher's channel count that ``kept`` indexes
    for i, layer in enumerate(leaves):
        if isinstance(layer, nn.BatchNorm2d):
            if kept is not None:
                _slice_batch_norm(layer, kept)
            continue
        if kept is not None:
            _slice_inputs(layer, kept, channels)
            kept = None
        if isinstance(layer, nn.Conv2d) and i < len(leaves) - 1:
            kept, channels = _strongest_filters(layer.weight, ratio), layer.out_channels
            _slice_outputs(layer, kept)
    return student


def _strongest_filters(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    count = max(1, round(weight.shape[0] * ratio))
    return weight.detach().abs().flatten(1).sum(1).topk(count).indices.sort().values


def _slice_outputs(conv: nn.Conv2d, kept: torch.Tensor) -> None:
    conv.weight = nn.Parameter(conv.weight.detach()[kept].clone())
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.detach()[kept].clone())
    conv.out_channels = len(kept)


def _slice_inputs(layer: nn.Conv2d | nn.Linear, kept: torch.Tensor, channels: int) -> None:
    """Keep the input slices fed by the ``kept`` channels (a Linear after Flatten: C × H·W columns)."""
    weight = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        per_channel = weight.shape[1] // channels
        columns = (kept.view(-1, 1) * per_channel + torch.arange(per_channel)).flatten()
        layer.weight = nn.Parameter(weight[:, columns].clone())
        layer.in_features = len(columns)
    else:
        layer.weight = nn.Parameter(weight[:, kept].clone())
        layer.in_channels = len(kept)


def _slice_batch_norm(bn: nn.BatchNorm2d, kept: torch.Tensor) -> None:
    for name in ("weight", "bias"):
        setattr(bn, name, nn.Parameter(getattr(bn, name).detach()[kept].clone()))
    for name in ("running_mean", "running_var"):
        setattr(bn, name, getattr(bn, name)[kept].clone())
    bn.num_features = len(kept)


def _update_layer_count(model: nn.Module, count: int) -> None:
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = count
