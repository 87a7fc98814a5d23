"""What static and dynamic quantization share: guards, node selection, fallback, putting the result back, reporting.

Subclasses say which op types they support and how to quantize a selection; this class does the
rest once: refuse an already-quantized model, name unnamed nodes (ORT selects nodes by name), lift
Constant-node and Identity-of-initializer weights and biases to initializers (exporters emit those for
folded BatchNorm and shared biases, and ORT then leaves the Convs in FP32 between Q/DQ),
convert to a QDQ-capable opset, quantize, hold a fidelity budget, and count the Q/DQ pairs ORT's
optimizer could not fuse.

By default the result holds the fidelity budget of ``onnxcompress.passes.budget`` (judged on held-out
calibration samples, labelled samples or synthetic inputs; ``max_drop``, ``max_error``). Over budget,
the fallback keeps up to ``max_fallback`` layers in FP32 (``fallback.py``); if the budget still does
not hold the pass raises ``CheckFailed`` naming the metric, its value and the budget, and writes
nothing, unless ``accept_loss`` accepts the loss (the model is then kept and a note says the budget
broke).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass, NameFixPass, RemoveInitializersFromInputsPass

from onnxcompress import io, runtime
from onnxcompress.calibration.validation import model_batches
from onnxcompress.errors import UsageError
from onnxcompress.passes import budget as fidelity_budget
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.exclude import excluded_nodes, of_type
from onnxcompress.passes.initializers import allow_plain_initializers
from onnxcompress.passes.quantization.support import fallback, guard
from onnxcompress.passes.quantization.support.ort_bridge import Selection, with_shapes
from onnxcompress.passes.quantization.support.selection import (
    WEIGHTED_OPS, fallback_candidates, output_tail, select, weight_inputs, weight_sizes,
)
from onnxcompress.passes.quantization.support.target import ElementType
from onnxcompress.passes.quantization.support.unfused import unfused_after_ort

TAIL = "the output tail"

# Options both quantizers declare, with their help (``CompressionPass.option_specs``).
PerChannel = Annotated[bool, "one weight scale per output channel (true) or one per tensor (false)"]
WeightType = Annotated[ElementType | None, "INT8 weight type; none: chosen for this CPU (int8)"]
ReduceRange = Annotated[bool | None, "7-bit weights, so the U8S8 kernels of CPUs without VNNI cannot saturate; "
                                     "none: true on x86 without VNNI, else false"]
Exclude = Annotated[list[str] | None, "glob patterns (a|b) of node names left in FP32 (names from before fuse match too); "
                                     "a pattern matching no node of op_types is an error"]
MaxFallback = Annotated[int, "most layers put back in FP32 (most damage per weight element first) until the fidelity budget holds; "
                             "the output tail counts as one; 0: none"]
FidelityOutput = Annotated[str | None, "the one model output the fidelity budget judges (e.g. the one consumers read); none: all outputs"]


class QuantizePass(CompressionPass):
    """Base of the quantization passes (not registered: it has no ``name``)."""

    exact = False
    trainable: ClassVar[bool] = False  # its output is a QDQ graph ``recover`` can train with simulated INT8

    def __init__(
        self,
        *,
        op_types: list[str] | None,
        exclude: list[str] | None,
        max_drop: float | None,
        max_fallback: int,
        fidelity_output: str | None,
        max_error: float | None = None,
        accept_loss: bool = False,
    ) -> None:
        super().__init__()
        self.op_types = op_types
        self.exclude = exclude
        self.max_drop = max_drop
        self.max_fallback = max_fallback
        self.fidelity_output = fidelity_output
        self.max_error = max_error
        self.accept_loss = accept_loss

    def check_common_options(self) -> None:
        """Refuse bad choices, a ``max_drop`` outside [0, 1], a negative ``max_fallback`` and op types this
        quantization cannot handle (subclasses call it once their own options are set)."""
        self.check_choices()
        fidelity_budget.check_options(self)
        self.require(self.max_fallback >= 0, "max_fallback", ">= 0")
        supported = self.supported_op_types()
        unsupported = sorted(set(self.op_types or []) - set(supported))
        if unsupported:
            raise UsageError(f"{self.name}: op_types {unsupported} cannot be quantized here; supported: {', '.join(supported)}")

    def supported_op_types(self) -> list[str]:
        """Op types this kind of quantization can handle."""
        raise NotImplementedError

    def default_op_types(self) -> list[str]:
        """Op types quantized when ``op_types`` is not given."""
        raise NotImplementedError

    def prepare_graph(self, model: ir.Model, op_types: list[str], excluded: list[str]) -> None:
        """Exact FP32 rewrites (in place) that let more of ``op_types`` run as integer kernels, leaving the ``excluded``
        nodes' names; none by default."""

    def prepare(self, model: ir.Model, proto: onnx.ModelProto, selection: Selection) -> fallback.Quantize:
        """Whatever must run once (e.g. calibration), returning a function quantizing a selection."""
        raise NotImplementedError

    def choose_selection(
        self, model: ir.Model, proto: onnx.ModelProto, quantize: fallback.Quantize, selection: Selection,
    ) -> tuple[Selection, onnx.ModelProto | None]:
        """The selection to quantize (before any accuracy fallback) and its quantized model if already made;
        ``selection`` itself by default."""
        return selection, None

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Quantize ``model`` in place within the fidelity budget and report what was done."""
        guard.refuse_quantized(model)
        guard.refuse_half_precision(model)
        budget = self._budget(model)  # FP32's outputs, before anything here changes the model
        NameFixPass()(model)
        seal_weights(model)
        raise_to_qdq_opset(model)
        LiftConstantsToInitializersPass()(model)  # ORT fuses a Conv/Gemm only when its bias is an initializer
        materialize_identity_constants(model)
        op_types = self.op_types or self.default_op_types()
        computed = computed_weights(model, op_types)
        if computed:
            self.note(f"{len(computed)} Conv/Gemm/LSTM weights are computed in the graph, not stored (e.g. {computed[0]!r}): "
                      "ORT's quantizers treat only stored weights as weights; run fold-constants first")
        excluded = excluded_nodes(self, model, of_type(*op_types))
        self.prepare_graph(model, op_types, excluded)
        proto = with_shapes(io.to_proto(model))
        selection = select(proto, op_types, excluded)
        quantize = self.prepare(model, proto, selection)
        selection, quantized = self.choose_selection(model, proto, quantize, selection)
        quantized = self._within_budget(budget, proto, quantize, selection, quantized)
        self._report_unfused(quantized)
        io.replace_contents(model, quantized)
        if not guard.quantized_nodes(model):
            self.note(self._nothing_quantized(proto, selection, op_types))
        return ir.passes.PassResult(model, modified=True)

    @staticmethod
    def _nothing_quantized(proto: onnx.ModelProto, selection: Selection, op_types: list[str]) -> str:
        """Why no layer came out quantized: none had a stored weight, or the fallback kept every one in FP32 (embedding
        tables stored as int8 rows are no layer: their own note says so)."""
        layers = fallback_candidates(proto, selection)
        if not layers:
            weighted = "/".join(op for op in op_types if op in WEIGHTED_OPS)
            return f"quantized no layer: no {weighted} node here has a stored weight to quantize"
        return (f"quantized no layer: the {len(layers)} layer(s) it could quantize ({layers[0]!r} first) were all kept in "
                "FP32 to hold the fidelity budget")

    def evaluation_feeds(self, model: ir.Model) -> Mapping[str, np.ndarray]:
        """Inputs to judge fidelity on: the first calibration feed in the model's own batch, else the run's inputs."""
        if self.context.calibration is not None:
            return next(model_batches(self.context.calibration, model)).arrays()
        return self.context.inputs if self.context.inputs is not None else runtime.synthetic_inputs(model)

    def _budget(self, model: ir.Model) -> fidelity_budget.Budget:
        """The fidelity budget of this run, on FP32's outputs; holds calibration samples out of this run's
        calibration data (``self.context.calibration`` becomes the rest)."""
        budget, self.context.calibration = fidelity_budget.default_budget(
            model, calibration=self.context.calibration, labelled=self.context.labelled,
            max_error=self.max_error, max_drop=self.max_drop, inputs=self.context.inputs, output=self.fidelity_output)
        return budget

    def _within_budget(
        self, budget: fidelity_budget.Budget, proto: onnx.ModelProto, quantize: fallback.Quantize,
        selection: Selection, quantized: onnx.ModelProto | None,
    ) -> onnx.ModelProto:
        """The quantized model, with layers kept in FP32 until the budget holds; ``CheckFailed`` if it cannot
        hold, unless ``accept_loss``. When a ``recover`` step follows and can train this pass's output
        (``trainable``), everything selected stays quantized and that step holds the budget."""
        if self.context.recovery_follows and self.trainable:
            quantized = quantized if quantized is not None else quantize(selection)
            fidelity_budget.leave_to_recovery(self, budget, budget.score(quantized))
            return quantized
        result = fallback.fall_back(quantize, selection, self._candidates(proto, selection), budget, self.max_fallback, quantized)
        self.context.details["fallback"] = {
            **budget.report(result.score), "kept_fp32": result.kept_fp32, "sensitivity": result.sensitivity,
            "accepted_loss": not result.within_budget,
        }
        for line in result.reasons(budget):
            self.note(line)
        tried = f", over budget even with up to {result.tried} {'layer' if result.tried == 1 else 'layers'} kept in FP32"
        fidelity_budget.settle(self, budget, result.score, accept_loss=self.accept_loss, effort=tried)
        return result.proto

    @staticmethod
    def _candidates(proto: onnx.ModelProto, selection: Selection) -> list[fallback.Candidate]:
        """Each weighted layer the selection quantizes (cost: its weight size), and the output tail as one group
        (cost: the median layer's)."""
        costs = weight_sizes(proto, fallback_candidates(proto, selection))
        layers = [fallback.Candidate(name, (name,), cost) for name, cost in costs.items()]
        tail = output_tail(proto, selection)
        if tail:
            layers.append(fallback.Candidate(TAIL, tuple(tail), int(np.median(list(costs.values()) or [1]))))
        return layers

    def _report_unfused(self, quantized: onnx.ModelProto) -> None:
        unfused = unfused_after_ort(quantized)
        self.context.details["unfused_qdq"] = unfused.to_dict()
        if unfused.count:
            layers = ", ".join(f"{n} {op}" for op, n in sorted(unfused.layers.items()))
            self.note(f"ORT left {unfused.count} layers in FP32 between Q/DQ ({layers}), e.g. {unfused.examples[0]}")
        else:
            self.note("ORT fused every quantized layer (no float op left between Q/DQ)")


def seal_weights(model: ir.Model) -> None:
    """Make initializers constants: IR < 4 models (the onnx wheel's zoo models) also list them as graph
    inputs, which makes them overridable, so ORT's optimizer may not fold or fuse through them."""
    if any(value.name in model.graph.initializers for value in model.graph.inputs):
        RemoveInitializersFromInputsPass()(model)
        allow_plain_initializers(model)


def computed_weights(model: ir.Model, op_types: list[str]) -> list[str]:
    """Conv/Gemm/LSTM nodes (of ``op_types``) with a weight computed by other nodes rather than stored (a MatMul's
    second input is often an activation)."""
    return [
        node.name for node in model.graph
        if node.op_type in ("Conv", "Gemm", "LSTM") and node.op_type in op_types
        and any(i < len(node.inputs) and node.inputs[i] is not None and node.inputs[i].const_value is None
                for i in weight_inputs(node.op_type))
    ]


def raise_to_qdq_opset(model: ir.Model) -> None:
    """Convert ``model`` (in place) to the opset QDQ needs before anything reads tensor names: the
    converter adds nodes (Softmax below opset 13 gains a Flatten/Reshape), so calibrating the old graph
    missed the tensors the quantizer then asked ranges for."""
    io.raise_opset(model, guard.QDQ_OPSET, guard.QDQ_PURPOSE)


def materialize_identity_constants(model: ir.Model) -> None:
    """Replace ``Identity(initializer)`` by an initializer of its own, so each consumer sees a constant."""
    graph = model.graph
    for node in list(graph):
        source, out = (node.inputs[0] if node.inputs else None), node.outputs[0]
        if node.op_type != "Identity" or source is None or source.const_value is None or out.is_graph_output():
            continue
        copy = ir.Value(name=out.name, shape=source.shape, type=source.type, const_value=source.const_value)
        out.replace_all_uses_with(copy)
        graph.remove(node, safe=True)
        graph.register_initializer(copy)
