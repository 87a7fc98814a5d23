"""``quantize-dynamic``: INT8 weights for MatMul/Gemm/LSTM (and Attention), activations quantized at run time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress.errors import UsageError
from onnxcompress.passes.budget import AcceptLoss, MaxDrop, MaxError
from onnxcompress.passes.quantization.support import calibrated_scales, ort_bridge, rounding, row_quantizers
from onnxcompress.passes.quantization.support.embedding import quantize_embeddings
from onnxcompress.passes.quantization.support.gemm import split_gemms
from onnxcompress.passes.quantization.support.fallback import Quantize
from onnxcompress.passes.quantization.quantize_pass import (
    Exclude, FidelityOutput, MaxFallback, PerChannel, QuantizePass, ReduceRange, WeightType,
)
from onnxcompress.passes.quantization.support.ranges import Method, activation_ranges
from onnxcompress.passes.quantization.support.target import QuantTarget, resolve_target


class QuantizeDynamic(QuantizePass):
    """Dynamic INT8 of MatMul/Gemm/Attention/LSTM weights, per-channel by default; works after ``fuse``.

    Built on ORT's IntegerOps quantizer. ``quantize_dynamic`` itself crashes on graphs holding ORT
    contrib ops ("Unable to find data type for weight_name"); we set its ``DefaultTensorType``.
    Convs are left alone by default: ConvInteger made a CNN 5–6x slower than FP32. ``gptq`` rounds
    MatMul weights with error feedback on calibration activations (``rounding.py``) instead of to nearest.
    ``activation_scales="calibrated"`` quantizes activations with scales calibrated once (``method``,
    ``ranges_file``) instead of per batch, so a sample's result no longer depends on its batch
    (``calibrated_scales.py``). Activations that ``scale-tokens`` divided by their row peaks are quantized
    row by row in one ``QuantizeLinear`` from opset 21 (``row_quantizers.py``).
    By default the result must keep a fidelity budget on held-out calibration samples (slice error ≤ 0.5;
    accuracy drop ≤ 0.01 with labels), layers going back to FP32 until it does, else ``CheckFailed``
    unless ``accept_loss=true`` (``quantize_pass.py``).
    """

    name = "quantize-dynamic"

    def __init__(
        self,
        *,
        per_channel: PerChannel = True,
        weight_type: WeightType = None,
        reduce_range: ReduceRange = None,
        op_types: Annotated[list[str] | None, "op types to quantize (a|b); none: MatMul, Gemm, Attention, LSTM and embedding Gathers"] = None,
        exclude: Exclude = None,
        gptq: Annotated[bool, "round MatMul weights with error feedback on calibration activations (GPTQ) instead of to nearest; "
                              "needs int8 weights"] = False,
        activation_scales: Annotated[Literal["dynamic", "calibrated"], "dynamic: computed per batch at run time; calibrated: "
                                                                       "calibrated once (method, ranges_file), so a sample's result "
                                                                       "does not depend on its batch"] = "dynamic",
        method: Annotated[Method | None, "with activation_scales=calibrated: the range estimator (as quantize-static's); "
                                         "none: minmax"] = None,
        ranges_file: Annotated[str | None, "with activation_scales=calibrated: JSON file of activation ranges, read when it exists, "
                                           "else written after calibrating"] = None,
        max_drop: MaxDrop = None,
        max_fallback: MaxFallback = 8,
        fidelity_output: FidelityOutput = None,
        max_error: MaxError = None,
        accept_loss: AcceptLoss = False,
    ) -> None:
        super().__init__(op_types=op_types, exclude=exclude, max_drop=max_drop, max_fallback=max_fallback, fidelity_output=fidelity_output,
                         max_error=max_error, accept_loss=accept_loss)
        self.per_channel = per_channel
        self.weight_type = weight_type
        self.reduce_range = reduce_range
        self.gptq = gptq
        self.activation_scales = activation_scales
        self.method = method
        self.ranges_file = ranges_file
        self.check_common_options()
        if activation_scales == "dynamic" and (method or ranges_file):
            raise UsageError(f"{self.name}: method and ranges_file apply only with activation_scales=calibrated")
        if gptq and weight_type == "uint8":
            raise UsageError(f"{self.name}: gptq rounds symmetric int8 weights; drop weight_type=uint8 or gptq")

    def calibration_need(self) -> str | None:
        """GPTQ weighs rounding errors by activations; calibrated scales need ranges (or an existing ranges_file)."""
        if self.gptq:
            return "gptq weighs rounding errors by the activations"
        if self.activation_scales == "calibrated" and not (self.ranges_file and Path(self.ranges_file).is_file()):
            return "activation_scales=calibrated calibrates activation ranges on it (or give an existing ranges_file)"
        return None

    def supported_op_types(self) -> list[str]:
        """Everything ORT's IntegerOps quantizer has a rule for."""
        from onnxruntime.quantization.registry import IntegerOpsRegistry

        return sorted({*IntegerOpsRegistry, "Gemm"})

    def default_op_types(self) -> list[str]:
        """MatMul, Gemm, (fused) Attention and LSTM, where dynamic INT8 pays on CPU, and embedding Gathers.

        Gather tables are stored as row-wise INT8 for size (``embedding.py``), at the same latency.
        """
        return list(ort_bridge.DYNAMIC_OP_TYPES)

    def prepare_graph(self, model: ir.Model, op_types: list[str], excluded: list[str]) -> None:
        """Embedding tables (Gathers not excluded) stored row-wise INT8 (``embedding.py``) rather than by ORT, per tensor."""
        if "Gather" not in op_types:
            return
        names = quantize_embeddings(model.graph, set(excluded))
        if names:
            self.note(f"{len(names)} embedding tables stored as row-wise INT8 ({', '.join(names)})")

    def prepare(self, model: ir.Model, proto: onnx.ModelProto, selection: ort_bridge.Selection) -> Quantize:
        """Round weights (``gptq``) and split Gemms into MatMul + Add (ORT has no dynamic Gemm), once;
        return ORT's IntegerOps quantizer of a selection."""
        target = resolve_target("uint8", self.weight_type, self.reduce_range)
        rounded = self._round_weights(model, proto, selection, target) if self.gptq else {}
        if "Gemm" in selection.op_types:
            split = split_gemms(proto, exclude=set(selection.exclude))
            if split:
                self.note(f"{len(split)} Gemm split into MatMul + Add to be quantized (ORT re-fuses the bias)")
        ranges = self._calibrated_ranges(model, proto, selection) if self.activation_scales == "calibrated" else None
        self.context.details.update(target=target.describe(), activation_scales=self.activation_scales)
        self.note(f"{self.activation_scales} {target.describe()}, {'per-channel' if self.per_channel else 'per-tensor'} weights")

        def quantize(chosen: ort_bridge.Selection) -> onnx.ModelProto:
            for_ort = [op for op in chosen.op_types if op not in ("Gemm", "Gather")] + ["MatMul"] * ("Gemm" in chosen.op_types)
            if not for_ort:
                return proto
            chosen = dataclasses.replace(chosen, op_types=list(dict.fromkeys(for_ort)))
            arrays = {weight: array for weight, (nodes, array) in rounded.items() if all(map(chosen.covers, nodes))}
            source = rounding.with_initializers(proto, arrays) if arrays else proto
            quantized = ort_bridge.quantize_integer(source, target, per_channel=self.per_channel, selection=chosen)
            quantized, rows = row_quantizers.quantize_scaled_rows(quantized)
            if rows and "row_quantized_activations" not in self.context.details:
                self.note(f"{rows} per-token scaled activations quantized row by row, one QuantizeLinear each")
            self.context.details["row_quantized_activations"] = rows
            if ranges is None:
                return quantized
            frozen, counts = calibrated_scales.freeze_activation_scales(quantized, ranges)
            self.context.details["calibrated_scales"] = dataclasses.asdict(counts)
            return frozen

        return quantize

    def _calibrated_ranges(self, model: ir.Model, proto: onnx.ModelProto, selection: ort_bridge.Selection) -> dict[str, tuple[float, float]]:
        """Ranges of the activations the selected MatMuls read, calibrated once on the FP32 model (or loaded)."""
        names = calibrated_scales.matmul_activations(proto, selection)
        run = activation_ranges(model, self.context.calibration, names, method=self.method or "minmax", ranges_file=self.ranges_file)
        self.context.details.update(method=self.method or "minmax", ranges_file=self.ranges_file, calibration=run.to_dict())
        self.note(f"activation scales of {len(run.ranges)} tensors from {run.source} ({run.seconds:.1f} s, peak +{run.peak_rss_mb:.0f} MB RSS)")
        return run.ranges

    def _round_weights(
        self, model: ir.Model, proto: onnx.ModelProto, selection: ort_bridge.Selection, target: QuantTarget,
    ) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """Weight → (its MatMuls, GPTQ-rounded copy); a copy goes in only when a call quantizes all its MatMuls."""
        weights = rounding.weights_to_round(proto, selection.exclude) if "MatMul" in selection.op_types else {}
        activations = sorted({a for uses in weights.values() for _, a in uses})
        moments = rounding.input_second_moments(model, self.context.calibration, activations)
        rounded = rounding.rounded_weights(proto, moments, weights, target.weight_qmax, self.per_channel)
        why = "" if rounded or "MatMul" not in selection.op_types else f": {rounding.none_rounded_reason(proto, selection.exclude)}"
        self.note(f"{len(rounded)} MatMul weights rounded with error feedback (GPTQ) on the calibration activations{why}")
        return {weight: (tuple(node for node, _ in weights[weight]), array) for weight, array in rounded.items()}
