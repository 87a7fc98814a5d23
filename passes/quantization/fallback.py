"""Accuracy-aware fallback: return the most damaging layers to FP32 until a drop budget holds.

Each candidate layer is quantized *alone* and scored by how far the model's outputs move from FP32
(1 − cosine: continuous, so layers rank even when a small labelled set shows no accuracy change).
Layers are then kept in FP32 by damage per weight element, one at a time, until the budget
metric — accuracy drop on labelled data, or 1 − cosine when there are no labels — is within
``max_drop``. ORT's quantizers have no such loop (its ``qdq_loss_debug`` only reports per-tensor errors).
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


@dataclasses.dataclass
class Budget:
    """How a quantized candidate is judged: its ``drop`` in the budget metric and its output ``damage``."""

    metric: str
    max_drop: float
    drop: Callable[[onnx.ModelProto], float]
    damage: Callable[[onnx.ModelProto], float]


@dataclasses.dataclass
class FallbackResult:
    """The chosen model, the layers kept in FP32 (most sensitive first) and why."""

    proto: onnx.ModelProto
    kept_fp32: list[str]
    sensitivity: dict[str, float]
    drop: float
    within_budget: bool
    tried: int = 0

    def reasons(self, metric: str) -> list[str]:
        """One report line per layer kept in FP32."""
        lines = [
            f"kept {name} in FP32: quantized alone it costs 1 - cosine = {self.sensitivity[name]:.2e}"
            for name in self.kept_fp32
        ]
        if not self.within_budget:
            lines.append(f"{metric} drop {self.drop:.4f} still over budget: {self.tried} layers tried in FP32, "
                         f"kept the {len(self.kept_fp32)} of the lowest drop")
        return lines


def output_budget(reference: ir.Model, feeds: Mapping[str, np.ndarray], max_drop: float, output: str | None = None) -> Budget:
    """Budget on 1 − cosine against FP32 on ``feeds``: of ``output`` alone if named, else the worst output.

    Naming the output that matters (e.g. a pooled ``sentence_embedding`` rather than every token of
    ``last_hidden_state``) stops the fallback keeping layers in FP32 for damage nobody consumes.
    """
    expected = runtime.run(reference, feeds)
    if output is not None:
        expected = {output: _pick(expected, output)}

    def damage(proto: onnx.ModelProto) -> float:
        produced = _run(proto, feeds)
        return 1.0 - fidelity.compare(expected, {name: produced[name] for name in expected}).cosine

    return Budget("1 - cosine" if output is None else f"1 - cosine of {output}", max_drop, damage, damage)


def _pick(outputs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in outputs:
        raise UsageError(f"fidelity_output {name!r} is not a model output; outputs are: {', '.join(outputs)}")
    return outputs[name]


def accuracy_budget(reference: ir.Model, labelled, max_drop: float, output: str | None = None) -> Budget:
    """Budget on top-1 accuracy drop on ``labelled`` (an object with ``feeds``, ``labels``, ``accuracy(model, threads)``)."""
    base = labelled.accuracy(reference, runtime.DEFAULT_THREADS)
    damage = output_budget(reference, labelled.feeds, max_drop, output).damage

    def drop(proto: onnx.ModelProto) -> float:
        return base - labelled.accuracy(ir.serde.deserialize_model(proto), runtime.DEFAULT_THREADS)

    return Budget("accuracy", max_drop, drop, damage)


def fall_back(
    quantize: Quantize, selection: Selection, costs: Mapping[str, int], budget: Budget, max_layers: int,
) -> FallbackResult:
    """Quantize with ``selection``; if over budget, keep layers in FP32 one by one, most damage per cost first.

    When no prefix of the ranking meets the budget, the one with the lowest drop is returned (on a
    fragile model, keeping a layer in FP32 can move the metric either way).

    ``costs`` maps each candidate layer to what keeping it in FP32 costs (its weight size): a small
    layer that does a little damage is returned before a large FFN layer that does slightly more.
    """
    proto = quantize(selection)
    drop = budget.drop(proto)
    if drop <= budget.max_drop:
        return FallbackResult(proto, [], {}, drop, True)
    sensitivity = layer_sensitivity(quantize, selection, list(costs), budget)
    ranked = sorted(sensitivity, key=lambda name: sensitivity[name] / max(costs[name], 1), reverse=True)[:max_layers]
    best = FallbackResult(proto, [], sensitivity, drop, False, len(ranked))
    for count in range(1, len(ranked) + 1):
        kept = ranked[:count]
        proto = quantize(dataclasses.replace(selection, exclude=[*selection.exclude, *kept]))
        drop = budget.drop(proto)
        if drop <= budget.max_drop:
            return FallbackResult(proto, kept, sensitivity, drop, True, count)
        if drop < best.drop:
            best = FallbackResult(proto, kept, sensitivity, drop, False, len(ranked))
    return best


def layer_sensitivity(quantize: Quantize, selection: Selection, layers: Sequence[str], budget: Budget) -> dict[str, float]:
    """Output damage of quantizing each layer alone (everything else FP32)."""
    return {name: budget.damage(quantize(dataclasses.replace(selection, only=[name]))) for name in layers}


def _run(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return runtime.run(ir.serde.deserialize_model(proto), feeds)
