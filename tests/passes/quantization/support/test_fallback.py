"""Accuracy-aware fallback: the one very sensitive layer goes back to FP32, and the budget holds."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import checks, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeDynamic, QuantizeStatic
from onnxcompress.passes import budget as fidelity_budget
from onnxcompress.passes.quantization.support import fallback
from onnxcompress.passes.quantization.support.ort_bridge import Selection
from onnxcompress.pipeline import LabelledData

from ..conftest import MLP_TEXT, with_weights


def mlp_with_outlier_in(layer: str) -> ir.Model:
    """The MLP whose ``layer`` weight has one huge value in row 0: per-tensor INT8 then rounds the rest to zero.

    Fed inputs whose feature 0 is zero, the outlier itself contributes nothing, so FP32 outputs stay
    ordinary while the quantized layer loses everything else.
    """
    model = with_weights(MLP_TEXT)
    weight = model.graph.initializers[layer]
    array = weight.const_value.numpy().copy()
    array[0, 0] = 500.0
    weight.const_value = ir.tensor(array, name=layer)
    return model


def test_output_budget_returns_the_sensitive_layer_to_fp32() -> None:
    model = mlp_with_outlier_in("wa")
    x = np.random.default_rng(5).normal(size=(16, 16)).astype(np.float32)
    x[:, 0] = 0.0
    run = QuantizeDynamic(per_channel=False, max_drop=1e-3).apply(model, calibration=ArrayReader({"x": x}))

    fallback = run.details["fallback"]
    assert fallback["kept_fp32"] == ["matmul_0"]
    assert fallback["within_budget"] and fallback["values"]["1 - cosine"] <= 1e-3
    assert fallback["budget"] == {"slice error": 0.5, "1 - cosine": 1e-3}
    assert fallback["sensitivity"]["matmul_0"] > fallback["sensitivity"]["matmul_1"]
    assert [n.op_type for n in model.graph if n.name == "matmul_0"] == ["MatMul"]
    assert any("matmul_0" in line for line in run.notes)
    assert checks.graph_problems(model) == []


def test_no_fallback_when_the_budget_already_holds(mlp) -> None:
    assert QuantizeDynamic(max_drop=0.5)(mlp).details["fallback"]["kept_fp32"] == []


def test_accuracy_budget_on_labelled_data(cnn, cnn_inputs, cnn_reader) -> None:
    labels = np.argmax(runtime.run(cnn, cnn_inputs)["y"], axis=1)
    run = QuantizeStatic(max_drop=0.0).apply(cnn, calibration=cnn_reader, labelled=LabelledData(cnn_inputs, labels))
    fallback = run.details["fallback"]
    assert list(fallback["budget"]) == ["accuracy drop"] and fallback["judged_on"] == "16 labelled samples"
    assert fallback["within_budget"] == (fallback["values"]["accuracy drop"] <= 0.0)
    accuracy = np.mean(np.argmax(runtime.run(cnn, cnn_inputs)["y"], axis=1) == labels)
    assert (1.0 - accuracy <= 0.0) == fallback["within_budget"]


TWO_OUTPUTS_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
two (float[N, 16] x) => (float[N, 16] wide, float[N, 8] y)
<float[16, 16] wa = {0.0}, float[16, 8] wb = {0.0}>
{
    wide = MatMul (x, wa)
    y = MatMul (x, wb)
}
"""


def two_outputs_with_outlier_in_wa() -> tuple[ir.Model, ArrayReader]:
    """Two parallel MatMuls, each its own output; only ``wa`` (feeding ``wide``) breaks under per-tensor INT8."""
    model = with_weights(TWO_OUTPUTS_TEXT)
    weight = model.graph.initializers["wa"]
    array = weight.const_value.numpy().copy()
    array[0, 0] = 500.0
    weight.const_value = ir.tensor(array, name="wa")
    x = np.random.default_rng(5).normal(size=(16, 16)).astype(np.float32)
    x[:, 0] = 0.0
    return model, ArrayReader({"x": x})


def test_budget_judged_on_all_outputs_keeps_the_layer_of_the_other_output() -> None:
    model, reader = two_outputs_with_outlier_in_wa()
    run = QuantizeDynamic(per_channel=False, max_drop=1e-3).apply(model, calibration=reader)
    assert run.details["fallback"]["kept_fp32"] == ["matmul_0"]


def test_budget_judged_only_on_the_chosen_output() -> None:
    model, reader = two_outputs_with_outlier_in_wa()
    run = QuantizeDynamic(per_channel=False, max_drop=1e-3, fidelity_output="y").apply(model, calibration=reader)
    fallback = run.details["fallback"]
    assert fallback["kept_fp32"] == [] and fallback["within_budget"]
    assert fallback["where"].startswith("'y'")
    assert {n.op_type for n in model.graph} >= {"MatMulInteger"}
    for level in ("disable", "all"):
        assert set(runtime.run(model, reader.arrays, optimization=level)) == {"wide", "y"}
    assert checks.graph_problems(model) == []


def test_unknown_fidelity_output_is_a_usage_error() -> None:
    model, reader = two_outputs_with_outlier_in_wa()
    with pytest.raises(UsageError, match="wide, y"):
        QuantizeDynamic(max_drop=1e-3, fidelity_output="logits").apply(model, calibration=reader)


def _additive_budget(damage: dict[str, float], max_drop: float) -> tuple[fallback.Quantize, fidelity_budget.Budget]:
    """A fake quantizer whose "model" is the set of quantized layers, and a budget adding their damages."""
    layers = list(damage)

    def quantize(selection: Selection) -> frozenset[str]:
        chosen = selection.only or layers
        return frozenset(name for name in chosen if name not in selection.exclude)

    def total(quantized: frozenset[str]) -> float:
        return sum(damage[name] for name in quantized)

    limits = (fidelity_budget.Limit("1 - cosine", max_drop),)
    return quantize, fidelity_budget.Budget(limits, lambda q: fidelity_budget.Score((total(q),)), total)


def _layers(costs: dict[str, int]) -> list[fallback.Candidate]:
    return [fallback.Candidate(name, (name,), cost) for name, cost in costs.items()]


def test_fallback_keeps_the_most_damage_per_weight_first() -> None:
    damage = {"ffn": 4e-3, "small": 1e-3, "tiny": 1e-4}
    costs = {"ffn": 1000, "small": 10, "tiny": 100}
    quantize, budget = _additive_budget(damage, max_drop=4.2e-3)
    result = fallback.fall_back(quantize, Selection(op_types=["MatMul"]), _layers(costs), budget, max_layers=3)
    assert result.kept_fp32 == ["small"]
    assert result.within_budget and result.score.values == pytest.approx((4.1e-3,))
    assert result.sensitivity == pytest.approx(damage)


def test_fallback_stops_at_max_layers_and_says_it_is_over_budget() -> None:
    damage = {"a": 1e-3, "b": 1e-3, "c": 1e-3}
    quantize, budget = _additive_budget(damage, max_drop=0.0)
    result = fallback.fall_back(quantize, Selection(op_types=["MatMul"]), _layers(dict.fromkeys(damage, 10)), budget, max_layers=2)
    assert len(result.kept_fp32) == 2 and not result.within_budget
    assert result.reasons(budget)[-1] == "1 - cosine 0.001 > 0: over budget with 2 candidates tried in FP32, kept the 2 of the lowest excess"


def test_over_budget_fallback_returns_the_configuration_with_the_lowest_drop() -> None:
    """A fragile model: keeping "a" alone in FP32 helps, keeping "b" as well makes it worse than nothing kept."""
    drops = {frozenset("abc"): 0.05, frozenset("bc"): 0.03, frozenset("c"): 0.08, frozenset(): 0.0}

    def quantize(selection: Selection) -> frozenset[str]:
        return frozenset(selection.only or "abc") - set(selection.exclude)

    def score(quantized: frozenset[str]) -> fidelity_budget.Score:
        return fidelity_budget.Score((drops.get(quantized, 0.01 * len(quantized)),))

    budget = fidelity_budget.Budget((fidelity_budget.Limit("accuracy drop", 0.01),), score, lambda q: 0.01 * len(q))
    result = fallback.fall_back(quantize, Selection(op_types=["Conv"]), _layers(dict.fromkeys("abc", 1)), budget, max_layers=2)
    assert result.kept_fp32 == ["a"] and not result.within_budget
    assert result.score.values == (0.03,) and result.proto == frozenset("bc") and result.tried == 2


def test_a_group_candidate_is_kept_in_fp32_as_one() -> None:
    """The output tail is one candidate of several nodes: kept, all of them leave the quantized selection."""
    damage = {"conv": 0.01, "sigmoid": 0.3, "concat": 0.6}
    quantize, budget = _additive_budget(damage, max_drop=0.05)
    candidates = [fallback.Candidate("conv", ("conv",), 100), fallback.Candidate("the output tail", ("sigmoid", "concat"), 100)]
    result = fallback.fall_back(quantize, Selection(op_types=["Conv"]), candidates, budget, max_layers=1)
    assert result.kept_fp32 == ["the output tail"] and result.within_budget and result.proto == frozenset({"conv"})


def test_budget_describes_the_broken_limits_and_where() -> None:
    budget = fidelity_budget.Budget((fidelity_budget.Limit("slice error", 0.5), fidelity_budget.Limit("1 - cosine", 0.01)), None, None)
    assert budget.describe(fidelity_budget.Score((9.9, 0.001), "'y' axis 1 index 34")) == "slice error 9.9 > 0.5 at 'y' axis 1 index 34"
    assert budget.describe(fidelity_budget.Score((0.1, 0.02), "'y' whole")) == "1 - cosine 0.02 > 0.01"
    assert budget.describe(fidelity_budget.Score((0.1, 0.001))) == "slice error 0.1 <= 0.5, 1 - cosine 0.001 <= 0.01"
    assert budget.excess(fidelity_budget.Score((1.0, 0.001))) == pytest.approx(1.0) and not budget.holds(fidelity_budget.Score((float("nan"), 0.0)))
