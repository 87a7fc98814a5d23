"""Accuracy-aware fallback: return the most damaging layers to FP32 until a fidelity budget holds.

The budget (``onnxcompress.passes.budget``) limits how far the quantized model may be from FP32.
Each candidate is quantized *alone* and scored by that slice error (``damage``:
continuous, so layers rank even when a small labelled set shows no accuracy change). Candidates are then kept in FP32 by damage per weight element, one at a time,
until every limit holds. A candidate is a weighted layer, or the *output tail* as one group (the
quantized nodes without weights after the last weighted layers, ``selection.output_tail``), which
can ruin an output with no layer to blame. ORT's quantizers have no such loop (its
``qdq_loss_debug`` only reports per-tensor errors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import onnx

from onnxcompress.passes.budget import SLICE_ERROR, Budget, Score
from onnxcompress.passes.quantization.support.ort_bridge import Selection

Quantize = Callable[[Selection], onnx.ModelProto]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What the fallback may keep in FP32: one weighted layer or a group of nodes, and what keeping it costs."""

    label: str
    nodes: tuple[str, ...]
    cost: int


@dataclasses.dataclass
class FallbackResult:
    """The chosen model, the candidates kept in FP32 (most damage per cost first), their damage and its score."""

    proto: onnx.ModelProto
    kept_fp32: list[str]
    sensitivity: dict[str, float]
    score: Score
    within_budget: bool
    tried: int = 0

    def reasons(self, budget: Budget) -> list[str]:
        """One report line per candidate kept in FP32, and one if the budget still does not hold."""
        lines = [
            f"kept {name} in FP32: quantized alone it gives a {SLICE_ERROR} of {self.sensitivity[name]:.2e}"
            for name in self.kept_fp32
        ]
        if not self.within_budget:
            lines.append(f"{budget.describe(self.score)}: over budget with {self.tried} candidates tried in FP32, "
                         f"kept the {len(self.kept_fp32)} of the lowest excess")
        return lines


def fall_back(
    quantize: Quantize, selection: Selection, candidates: Sequence[Candidate], budget: Budget, max_layers: int,
    first: onnx.ModelProto | None = None,
) -> FallbackResult:
    """Quantize with ``selection`` (or take ``first``, its result); if over budget, keep candidates in FP32 one by
    one, most damage per cost first, at most ``max_layers``.

    When no prefix of the ranking meets the budget, the one with the lowest excess is returned (on a
    fragile model, keeping a layer in FP32 can move the metric either way). ``Candidate.cost`` is what
    keeping it in FP32 costs (its weight size): a small layer that does a little damage is returned
    before a large FFN layer that does slightly more.
    """
    proto = first if first is not None else quantize(selection)
    score = budget.score(proto)
    if budget.holds(score) or not candidates or max_layers == 0:
        return FallbackResult(proto, [], {}, score, budget.holds(score))
    sensitivity = layer_sensitivity(quantize, selection, candidates, budget)
    ranked = sorted(candidates, key=lambda c: sensitivity[c.label] / max(c.cost, 1), reverse=True)[:max_layers]
    best = FallbackResult(proto, [], sensitivity, score, False, len(ranked))
    for count in range(1, len(ranked) + 1):
        kept = ranked[:count]
        proto = quantize(dataclasses.replace(selection, exclude=[*selection.exclude, *(n for c in kept for n in c.nodes)]))
        score = budget.score(proto)
        if budget.holds(score):
            return FallbackResult(proto, [c.label for c in kept], sensitivity, score, True, count)
        if budget.excess(score) < budget.excess(best.score):
            best = FallbackResult(proto, [c.label for c in kept], sensitivity, score, False, len(ranked))
    return best


def layer_sensitivity(quantize: Quantize, selection: Selection, candidates: Sequence[Candidate], budget: Budget) -> dict[str, float]:
    """Output damage of quantizing each candidate alone (everything else FP32)."""
    return {c.label: budget.damage(quantize(dataclasses.replace(selection, only=list(c.nodes)))) for c in candidates}
