"""Distillation losses: soft/hard classification, reverse KL, hidden states, attributions, embeddings.

Every function takes tensors and returns a scalar tensor (batch mean), so strategies can weigh and
sum them. Written against the formulas of Hinton et al. (soft targets at temperature T, scaled by
T² so their gradients keep the hard loss's magnitude) and DistilBERT (cosine on hidden states).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

HardKind = Literal["ce", "bce"]
DistanceKind = Literal["mse", "cosine"]


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the softened distributions, times T² (Hinton's soft-target loss)."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(student ‖ teacher) times T²: mode-seeking, for generative heads where the student is smaller."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_teacher, log_p_student, reduction="batchmean", log_target=True) * t * t


def hard_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    kind: HardKind = "ce",
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss against the true labels: cross-entropy on class ids, or BCE on multi-hot 0/1 targets."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=class_weights)
    return F.cross_entropy(logits, labels, weight=class_weights)


def hinton_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    temperature: float,
    alpha: float,
    kind: HardKind = "ce",
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """α · soft loss + (1 − α) · hard loss; without labels, the soft loss alone.

    For ``kind="bce"`` the soft part is the BCE between sigmoid-softened logits (one binary
    distribution per class), times T².
    """
    if kind == "bce":
        t = temperature
        soft = F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t)) * t * t
    else:
        soft = soft_kl(student_logits, teacher_logits, temperature)
    if labels is None:
        return soft
    return alpha * soft + (1.0 - alpha) * hard_loss(student_logits, labels, kind=kind, class_weights=class_weights)


def distance(student: torch.Tensor, teacher: torch.Tensor, kind: DistanceKind = "mse") -> torch.Tensor:
    """Mean squared error, or 1 − cosine similarity averaged over rows (features on the last axis)."""
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    return F.mse_loss(student, teacher)


def hidden_loss(
    student_states: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    layer_map: Mapping[int, int],
    *,
    projections: Mapping[int, torch.nn.Module] | None = None,
    kind: DistanceKind = "mse",
) -> torch.Tensor:
    """Mean distance between student layer ``s`` and teacher layer ``layer_map[s]``.

    When widths differ, ``projections[s]`` maps the student's features to the teacher's width.
    Convolutional maps (N, C, H, W) are compared with channels last.
    """
    projections = projections or {}
    losses = []
    for s, t in layer_map.items():
        student, teacher = _channels_last(student_states[s]), _channels_last(teacher_states[t])
        if s in projections:
            student = projections[s](student)
        losses.append(distance(student, teacher, kind))
    return torch.stack(losses).mean()


def attribution_maps(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, create_graph: bool) -> torch.Tensor:
    """|∂ logit[target] / ∂ input| summed over channels and L2-normalised per sample (saliency maps)."""
    inputs = inputs.detach().requires_grad_(True)
    picked = model(inputs).gather(1, targets.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(picked, inputs, create_graph=create_graph)
    maps = grad.abs().sum(dim=1).flatten(1) if grad.dim() > 2 else grad.abs()
    return F.normalize(maps, dim=1)


def attribution_loss(student_maps: torch.Tensor, teacher_maps: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between normalised attribution maps, averaged over the batch."""
    return (student_maps - teacher_maps).pow(2).sum(dim=1).mean()


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, kind: DistanceKind = "cosine") -> torch.Tensor:
    """Distance between sentence embeddings (rows)."""
    return distance(student, teacher, kind)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1) if x.dim() == 4 else x
