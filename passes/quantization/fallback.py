"""Accuracy-aware fallback: return the most damaging layers to FP32 until a fidelity budget holds.

A budget is one or more limits on how far the quantized model may be from FP32 (``Limit``): the
drop of top-1 accuracy on labelled data, 1 − cosine of the outputs, and the outputs' slice error
(``fidelity.slice_error``: it sees class scores collapse beside box coordinates, which a whole-output
cosine does not). Each candidate is quantized *alone* and scored by that slice error (``damage``:
continuous, so layers rank even when a small labelled set shows no accuracy change). Candidates are then kept in FP32 by damage per weight element, one at a time,
until every limit holds. A candidate is a weighted layer, or the *output tail* as one group (the
quantized nodes without weights after the last weighted layers, ``selection.output_tail``), which
can ruin an output with no layer to blame. ORT's quantizers have no such loop (its
``qdq_loss_debug`` only reports per-tensor errors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import fidelity, runtime
from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.ort_bridge import Selection

Quantize = Callable[[Selection], onnx.ModelProto]
Feeds = Mapping[str, np.ndarray]
SLICE_ERROR = "slice error"
COSINE = "1 - cosine"
ACCURACY = "accuracy drop"


@dataclasses.dataclass(frozen=True)
class Limit:
    """One bound of a budget: a quantized model's ``metric`` (0 = as FP32, larger is worse) at most ``bound``."""

    metric: str
    bound: float


@dataclasses.dataclass(frozen=True)
class Score:
    """A quantized model measured against a budget: one value per limit, and where its outputs are worst."""

    values: tuple[float, ...]
    where: str = ""


@dataclasses.dataclass
class Budget:
    """The limits a quantized model must keep, how to ``score`` one, the ``damage`` that ranks candidates, and
    what it is judged ``on`` (for messages)."""

    limits: tuple[Limit, ...]
    score: Callable[[onnx.ModelProto], Score]
    damage: Callable[[onnx.ModelProto], float]
    on: str = ""

    def excess(self, score: Score) -> float:
        """How far ``score`` is over the budget: the worst limit's excess relative to its bound; ≤ 0 when it holds."""
        return max(((value - limit.bound) / (limit.bound or 1.0) for value, limit in zip(score.values, self.limits)), default=0.0)

    def holds(self, score: Score) -> bool:
        """Every limit kept (a NaN value keeps none)."""
        return all(value <= limit.bound for value, limit in zip(score.values, self.limits))

    def describe(self, score: Score) -> str:
        """``slice error 9.94 > 0.5 at 'output0' axis 1 index 34``: the limits broken (all when none is)."""
        pairs = list(zip(score.values, self.limits))
        broken = [(v, limit) for v, limit in pairs if not v <= limit.bound] or pairs
        text = ", ".join(f"{limit.metric} {v:.4g} {'>' if not v <= limit.bound else '<='} {limit.bound:g}" for v, limit in broken)
        return text + (f" at {score.where}" if score.where and any(limit.metric == SLICE_ERROR for _, limit in broken) else "")

    def to_dict(self, score: Score) -> dict[str, float]:
        """``{metric: value}`` of ``score``."""
        return {limit.metric: value for value, limit in zip(score.values, self.limits)}


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


class Judged:
    """Feeds a quantized model is judged on (one or more runs in the model's batch) and FP32's outputs on them.

    Padding positions (``fidelity.padding_mask``) are dropped from the outputs; the runs' outputs are
    joined along their first axis when their other axes agree, else each run is compared on its own.
    """

    def __init__(self, reference: ir.Model, feeds: Sequence[Feeds], output: str | None = None) -> None:
        self.feeds = [dict(f) for f in feeds]
        self.masks = [fidelity.padding_mask(f) for f in self.feeds]
        self.output = output
        self.expected = [self._kept(runtime.run(reference, f), mask) for f, mask in zip(self.feeds, self.masks)]

    def fidelity(self, proto: onnx.ModelProto) -> fidelity.Fidelity:
        """How the outputs of ``proto`` compare with FP32's on these feeds."""
        model = ir.serde.deserialize_model(proto)
        produced = [self._kept(runtime.run(model, f), mask) for f, mask in zip(self.feeds, self.masks)]
        expected, got = _joined(self.expected), _joined(produced)
        if expected is not None and got is not None:
            return fidelity.compare(expected, got)
        return fidelity.Fidelity([o for e, g in zip(self.expected, produced) for o in fidelity.compare(e, g).outputs])

    def _kept(self, outputs: Mapping[str, np.ndarray], mask: np.ndarray | None) -> dict[str, np.ndarray]:
        if self.output is not None and self.output not in outputs:
            raise UsageError(f"fidelity_output {self.output!r} is not a model output; outputs are: {', '.join(outputs)}")
        names = [self.output] if self.output is not None else list(outputs)
        return {name: fidelity.unpadded(np.asarray(outputs[name]), mask) for name in names}


def _joined(runs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    """The runs' outputs concatenated along their first axis, or None when some output's other axes differ between runs."""
    joined = {}
    for name in runs[0]:
        arrays = [run[name] for run in runs]
        if len({a.shape[1:] for a in arrays}) > 1 or arrays[0].ndim == 0:
            return None if len(arrays) > 1 else {name: arrays[0] for name in runs[0]}
        joined[name] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    return joined


def output_budget(judged: Judged, *, max_error: float | None, max_drop: float | None = None, on: str = "") -> Budget:
    """Budget on the outputs: the slice error at most ``max_error`` and 1 − cosine at most ``max_drop`` (each when given)."""
    limits = tuple([Limit(SLICE_ERROR, max_error)] * (max_error is not None) + [Limit(COSINE, max_drop)] * (max_drop is not None))

    def score(proto: onnx.ModelProto) -> Score:
        found = judged.fidelity(proto)
        values = {SLICE_ERROR: found.slice_error, COSINE: 1.0 - found.cosine}
        return Score(tuple(values[limit.metric] for limit in limits), found.where())

    return Budget(limits, score, lambda proto: judged.fidelity(proto).slice_error, on)


def accuracy_budget(labelled, base: float, max_drop: float, judged: Judged, max_error: float | None = None, on: str = "") -> Budget:
    """Budget on the drop from ``base`` of the top-1 accuracy on ``labelled`` (an object with ``accuracy(model,
    threads)``) at most ``max_drop``, and the slice error on ``judged`` at most ``max_error`` when given."""
    outputs = output_budget(judged, max_error=max_error)

    def score(proto: onnx.ModelProto) -> Score:
        drop = base - labelled.accuracy(ir.serde.deserialize_model(proto), runtime.DEFAULT_THREADS)
        rest = outputs.score(proto) if outputs.limits else Score(())
        return Score((drop, *rest.values), rest.where)

    return Budget((Limit(ACCURACY, max_drop), *outputs.limits), score, outputs.damage, on)


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
