"""Distillation strategies: what the student is trained to match, one class per idea.

A strategy owns the (frozen) teacher and turns one batch into a scalar loss for the student.
``standard`` (Hinton soft/hard, or embedding distance), ``hidden`` (adds intermediate-layer
alignment with projections), ``attribution`` (adds input-gradient map matching), ``reverse_kld``
(KL(student ‖ teacher)); ``multi_stage`` (teacher → assistant → student) is two ``distill`` runs and
lives in ``engine``, which builds these strategies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch

from onnxcompress.distill import losses
from onnxcompress.errors import UsageError

Inputs = torch.Tensor | Mapping[str, torch.Tensor]
OutputKind = Literal["ce", "bce", "mse", "cosine"]


def forward(module: torch.nn.Module, inputs: Inputs) -> torch.Tensor:
    """Call ``module`` on a tensor, or on named tensors as keyword arguments (text encoders)."""
    return module(**inputs) if isinstance(inputs, Mapping) else module(inputs)


class Standard:
    """Match the teacher's outputs: Hinton's α·soft + (1−α)·hard for logits, a distance for embeddings.

    Only the teacher's final outputs are used, so the engine computes them once per dataset
    (``cache_teacher``) instead of once per epoch: distilling then costs what label-only training does.
    """

    cache_teacher = True

    def __init__(
        self,
        teacher: torch.nn.Module,
        *,
        temperature: float = 4.0,
        alpha: float = 0.7,
        kind: OutputKind = "ce",
        class_weights: torch.Tensor | None = None,
    ) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.alpha, self.kind, self.class_weights = temperature, alpha, kind, class_weights

    def prepare(self, student: torch.nn.Module, inputs: Inputs) -> None:
        """Set up anything that depends on the student (nothing for this strategy)."""

    def parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters the strategy adds (projections), optimised with the student's."""
        return []

    def loss(
        self, student: torch.nn.Module, inputs: Inputs, labels: torch.Tensor | None, teacher_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss of one batch (``teacher_out``: the teacher's outputs when already known)."""
        if teacher_out is None:
            with torch.no_grad():
                teacher_out = forward(self.teacher, inputs)
        return self.output_loss(forward(student, inputs), teacher_out, labels)

    def output_loss(self, student_out: torch.Tensor, teacher_out: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The loss on final outputs only (also what validation measures)."""
        if self.kind in ("mse", "cosine"):
            return losses.embedding_loss(student_out, teacher_out, self.kind)
        return losses.hinton_loss(
            student_out, teacher_out, labels,
            temperature=self.temperature, alpha=self.alpha, kind=self.kind, class_weights=self.class_weights,
        )


class ReverseKLD(Standard):
    """KL(student ‖ teacher) on the outputs: mode-seeking, for generative heads."""

    def output_loss(self, student_out, teacher_out, labels):
        """Reverse KL at the strategy's temperature; with labels, α · reverse KL + (1 − α) · hard loss."""
        soft = losses.reverse_kl(student_out, teacher_out, self.temperature)
        if labels is None:
            return soft
        return self.alpha * soft + (1.0 - self.alpha) * losses.hard_loss(student_out, labels, kind=self.kind, class_weights=self.class_weights)


class Hidden(Standard):
    """The standard loss plus alignment of named intermediate layers (``layer_map``: student → teacher index)."""

    cache_teacher = False

    def __init__(
        self,
        teacher: torch.nn.Module,
        *,
        student_layers: Sequence[str],
        teacher_layers: Sequence[str],
        layer_map: Mapping[int, int] | None = None,
        hidden_kind: Literal["mse", "cosine"] = "mse",
        hidden_weight: float = 1.0,
        **standard: Any,
    ) -> None:
        super().__init__(teacher, **standard)
        self.student_layers, self.teacher_layers = list(student_layers), list(teacher_layers)
        self.layer_map = dict(layer_map) if layer_map is not None else {i: i for i in range(len(self.student_layers))}
        self.hidden_kind, self.hidden_weight = hidden_kind, hidden_weight
        self.projections: dict[int, torch.nn.Module] = {}

    def prepare(self, student, inputs):
        """Add a linear projection for every mapped pair whose feature widths differ."""
        with torch.no_grad(), capture(student, self.student_layers) as s_states, capture(self.teacher, self.teacher_layers) as t_states:
            forward(student, inputs), forward(self.teacher, inputs)
        for s, t in self.layer_map.items():
            s_width, t_width = _width(s_states[s]), _width(t_states[t])
            if s_width != t_width:
                self.projections[s] = torch.nn.Linear(s_width, t_width, bias=False)

    def parameters(self):
        """The projections' weights."""
        return [p for proj in self.projections.values() for p in proj.parameters()]

    def loss(self, student, inputs, labels, teacher_out=None):
        """Output loss plus ``hidden_weight`` × mean hidden-state distance."""
        with torch.no_grad(), capture(self.teacher, self.teacher_layers) as t_states:
            teacher_out = forward(self.teacher, inputs)
        with capture(student, self.student_layers) as s_states:
            student_out = forward(student, inputs)
        hidden = losses.hidden_loss(s_states, t_states, self.layer_map, projections=self.projections, kind=self.hidden_kind)
        return self.output_loss(student_out, teacher_out, labels) + self.hidden_weight * hidden


class Attribution(Standard):
    """The standard loss plus matching the teacher's input-gradient maps (for the teacher's predicted class)."""

    cache_teacher = False

    def __init__(self, teacher: torch.nn.Module, *, attribution_weight: float = 10.0, **standard: Any) -> None:
        super().__init__(teacher, **standard)
        self.attribution_weight = attribution_weight

    def loss(self, student, inputs, labels, teacher_out=None):
        """Output loss plus ``attribution_weight`` × squared distance of normalised saliency maps."""
        if isinstance(inputs, Mapping):
            raise UsageError("the attribution strategy needs a single float input tensor (images), not named inputs")
        with torch.no_grad():
            teacher_out = self.teacher(inputs)
        targets = teacher_out.argmax(dim=1)
        with torch.enable_grad():
            teacher_maps = losses.attribution_maps(self.teacher, inputs, targets, create_graph=False)
        student_maps = losses.attribution_maps(student, inputs, targets, create_graph=True)
        matched = losses.attribution_loss(student_maps, teacher_maps.detach())
        return self.output_loss(student(inputs), teacher_out, labels) + self.attribution_weight * matched


STRATEGIES: dict[str, type[Standard]] = {
    "standard": Standard,
    "hidden": Hidden,
    "attribution": Attribution,
    "reverse_kld": ReverseKLD,
}


def build(name: str, teacher: torch.nn.Module, **options: Any) -> Standard:
    """The strategy called ``name`` around ``teacher`` (``multi_stage`` is :func:`multi_stage`)."""
    if name not in STRATEGIES:
        raise UsageError(f"unknown distillation strategy {name!r}; available: {', '.join([*STRATEGIES, 'multi_stage'])}")
    try:
        return STRATEGIES[name](teacher, **options)
    except TypeError as exc:
        raise UsageError(f"strategy {name!r}: {exc}") from None


@contextmanager
def capture(module: torch.nn.Module, names: Sequence[str]) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of the named sub-modules, in ``names`` order, during the forward passes inside."""
    modules = dict(module.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise UsageError(f"no layer named {missing[0]!r} in {type(module).__name__}")
    states: list[torch.Tensor | None] = [None] * len(names)
    handles = [modules[n].register_forward_hook(_store(states, i)) for i, n in enumerate(names)]
    try:
        yield states  # filled during the forward pass
    finally:
        for handle in handles:
            handle.remove()


def _store(states: list, index: int):
    def hook(module, args, output):
        states[index] = output[0] if isinstance(output, tuple) else output

    return hook


def _width(state: torch.Tensor) -> int:
    return state.shape[1] if state.dim() == 4 else state.shape[-1]
