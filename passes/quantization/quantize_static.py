"""``quantize-static``: INT8 QDQ with our calibrated activation ranges and CPU-aware types."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import onnx
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.passes.budget import AcceptLoss, MaxDrop, MaxError
from onnxcompress.passes.quantization.support import float_prefix, ort_bridge
from onnxcompress.passes.quantization.support.channel_gate import tile_channel_gates
from onnxcompress.passes.quantization.support.depthwise_padding import pad_depthwise_channels
from onnxcompress.passes.quantization.support.fallback import Quantize
from onnxcompress.passes.quantization.support.hard_activations import rewrite_hard_activations
from onnxcompress.passes.quantization.support.integer_friendly import fold_batch_norms, sums_as_adds
from onnxcompress.passes.quantization.quantize_pass import (
    Exclude, FidelityOutput, MaxFallback, PerChannel, QuantizePass, ReduceRange, WeightType,
)
from onnxcompress.passes.quantization.support.ranges import Method, activation_ranges, unbounded_ranges
from onnxcompress.passes.quantization.support.selection import nodes_touching, refuse_layers_only_in_subgraphs
from onnxcompress.passes.quantization.support.target import ElementType, resolve_target


class QuantizeStatic(QuantizePass):
    """Static INT8 (QDQ): calibrated activations, per-channel symmetric weights, types chosen from the CPU.

    Built on ORT's ``QDQQuantizer`` (its rules for what the CPU EP fuses), fed ranges from
    ``onnxcompress.calibration``'s estimators: with ``quantize_static`` itself, entropy gives the
    same scales as min-max and calibration memory grows with the sample count; ours stream with
    bounded memory. Defaults to U8 activations / S8 weights on x86, where ORT's default S8S8 leaves
    layers unfused and runs far slower (``docs/benchmarks/bench_quantization.md``). Depthwise convs are padded with
    zero filters to a multiple of 16 channels first (``pad_depthwise``, exact), where ORT's int8
    depthwise kernel runs about twice as fast.
    By default the result must keep a fidelity budget on held-out calibration samples (slice error ≤ 0.5;
    accuracy drop ≤ 0.01 with labels), layers going back to FP32 until it does, else ``CheckFailed``
    unless ``accept_loss=true`` (``quantize_pass.py``). With ``recover`` after it in the chain, everything stays
    INT8 and that step trains the QDQ graph with simulated INT8 (quantization-aware recovery) to hold the budget.
    """

    name = "quantize-static"
    trainable = True

    def __init__(
        self,
        *,
        method: Annotated[Method, "activation range estimator: observed extremes (minmax), 0.01 % clipped off each tail (percentile), "
                                  "or least KL divergence (entropy) or squared error (mse) of 8-bit quantization"] = "minmax",
        per_channel: PerChannel = True,
        activation_type: Annotated[ElementType | None, "INT8 activation type; none: chosen for this CPU (uint8 on x86, int8 on ARM)"] = None,
        weight_type: WeightType = None,
        reduce_range: ReduceRange = None,
        op_types: Annotated[list[str] | None, "op types to quantize (a|b); none: Conv, MatMul, Gemm and the ops around them "
                                              "that keep ORT's int8 kernels fused"] = None,
        exclude: Exclude = None,
        ranges_file: Annotated[str | None, "JSON file of activation ranges: read when it exists (then no calibration is needed), "
                                           "else written after calibrating"] = None,
        pad_depthwise: Annotated[bool, "pad depthwise convs with zero filters to a multiple of 16 channels (exact), "
                                       "where ORT's int8 depthwise kernel is fast"] = True,
        fp32_prefix: Annotated[Literal["none", "fastest"], "none: quantize from the first layer; fastest: time the model with each "
                                                           "leading part kept in FP32 at batch 1 and keep the fastest"] = "none",
        max_drop: MaxDrop = None,
        max_fallback: MaxFallback = 8,
        fidelity_output: FidelityOutput = None,
        max_error: MaxError = None,
        accept_loss: AcceptLoss = False,
    ) -> None:
        super().__init__(op_types=op_types, exclude=exclude, max_drop=max_drop, max_fallback=max_fallback, fidelity_output=fidelity_output,
                         max_error=max_error, accept_loss=accept_loss)
        self.method = method
        self.per_channel = per_channel
        self.activation_type = activation_type
        self.weight_type = weight_type
        self.reduce_range = reduce_range
        self.ranges_file = ranges_file
        self.pad_depthwise = pad_depthwise
        self.fp32_prefix = fp32_prefix
        self.check_common_options()

    def calibration_need(self) -> str | None:
        """Activation ranges are calibrated, unless ``ranges_file`` already holds them."""
        if self.ranges_file and Path(self.ranges_file).is_file():
            return None
        return "activation ranges are calibrated on it (or give an existing ranges_file)"

    def supported_op_types(self) -> list[str]:
        """Everything ORT's QDQ quantizer has a rule for, and our defaults (Tile: Q/DQ that ORT drops)."""
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        return sorted(set(QDQRegistry) | set(QLinearOpsRegistry) | set(ort_bridge.STATIC_OP_TYPES))

    def default_op_types(self) -> list[str]:
        """Conv/MatMul/Gemm and the ops around them that keep ORT's integer kernels fused."""
        return list(ort_bridge.STATIC_OP_TYPES)

    def prepare_graph(self, model: ir.Model, op_types: list[str], excluded: list[str]) -> None:
        """BatchNorms folded and two-input Sums made Adds (``integer_friendly``), depthwise convs padded to
        ORT's fast channel grid (``depthwise_padding``) and per-channel gates tiled for ORT's int8 Mul
        (``channel_gate``); hard activations wait for ``prepare``. A model whose layers are all in subgraphs is refused."""
        refuse_layers_only_in_subgraphs(model, op_types)
        folded = fold_batch_norms(model) if {"Conv", "Gemm"} & set(op_types) else 0
        turned = sums_as_adds(model) if "Add" in op_types else 0
        self.context.details.update(batch_norms_folded=folded, sums_as_adds=turned)
        if folded or turned:
            self.note(f"folded {folded} BatchNormalization into the layer before and made {turned} two-input Sum an Add: "
                      "ORT's quantizer has no int8 rule for either")
        if self.pad_depthwise and "Conv" in op_types:
            padded = pad_depthwise_channels(model)
            self.context.details["depthwise_padded"] = {name: list(sizes) for name, sizes in padded.items()}
            if padded:
                self.note(f"padded {len(padded)} depthwise convs to a multiple of 16 channels with zero filters "
                          f"({', '.join(f'{old}->{new}' for old, new in padded.values())}): ORT's int8 depthwise kernel is fast only there")
        tiled = tile_channel_gates(model, op_types)
        self.context.details["channel_gates_tiled"] = tiled
        if tiled:
            self.note(f"tiled {tiled} per-channel gates to their map's shape (a same-shape int8 Mul instead of a channels-last broadcast)")

    def prepare(self, model: ir.Model, proto: onnx.ModelProto, selection: ort_bridge.Selection) -> Quantize:
        """Calibrate (or load) activation ranges once; return the QDQ quantizer of a selection.

        Hard activations after Convs are rewritten into int8-capable forms (``hard_activations``) only
        for the Convs a selection quantizes: a Conv kept in FP32 (``exclude``, the fallback) keeps its
        HardSwish, which ORT fuses into the float Conv. The rewrite keeps the activation's output
        name, so the ranges calibrated on the fully rewritten graph serve every selection.
        """
        target = resolve_target(self.activation_type, self.weight_type, self.reduce_range)
        rewritten, counts = with_hard_activations(model, selection)
        self.context.details["hard_activations_rewritten"] = counts
        if any(counts.values()):
            self.note("rewrote " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) + " after Convs into int8-capable Clip/Add/Mul forms")
        rewritten_proto = ort_bridge.with_shapes(io.to_proto(rewritten))
        names = ort_bridge.tensors_to_calibrate(rewritten_proto, selection.op_types)
        empty = ort_bridge.empty_activations(rewritten_proto, selection.op_types)
        if empty:
            self.note(f"left {len(empty)} empty tensor(s) out of calibration (e.g. {empty[0]!r}): they hold no values to take a range of")
        run = activation_ranges(rewritten, self.context.calibration, names, method=self.method, ranges_file=self.ranges_file)
        unbounded = unbounded_ranges(run.ranges)
        unseen = sorted(set(names) - set(run.ranges))
        around_infinite, around_unseen = nodes_touching(rewritten_proto, unbounded), nodes_touching(rewritten_proto, unseen)
        in_float = list(dict.fromkeys([*around_infinite, *around_unseen]))
        if unbounded:
            self.context.details["unbounded_tensors"] = unbounded
            self.note(f"kept {len(around_infinite)} node(s) in float around {len(unbounded)} tensor(s) "
                      f"that reach infinity (e.g. {unbounded[0]!r}, an attention mask's -inf), which no INT8 scale holds")
        if unseen:
            self.context.details["unseen_tensors"] = unseen
            self.note(f"kept {len(around_unseen)} node(s) in float around {len(unseen)} tensor(s) "
                      f"that held no values in calibration (e.g. {unseen[0]!r}, a cache empty at a sequence's first step)")
        self.context.details.update(target=target.describe(), method=self.method, ranges_file=self.ranges_file, calibration=run.to_dict())
        self.note(f"{target.describe()}, {'per-channel' if self.per_channel else 'per-tensor'} weights")
        self.note(f"ranges of {len(run.ranges)} tensors from {run.source} ({run.seconds:.1f} s, peak +{run.peak_rss_mb:.0f} MB RSS)")

        def quantize(chosen: ort_bridge.Selection) -> onnx.ModelProto:
            source = rewritten_proto if chosen == selection else ort_bridge.with_shapes(io.to_proto(with_hard_activations(model, chosen)[0]))
            return ort_bridge.quantize_qdq(source, run.ranges, target, per_channel=self.per_channel, selection=chosen.without(in_float))

        return quantize

    def choose_selection(
        self, model: ir.Model, proto: onnx.ModelProto, quantize: Quantize, selection: ort_bridge.Selection,
    ) -> tuple[ort_bridge.Selection, onnx.ModelProto | None]:
        """With ``fp32_prefix="fastest"``: the selection, or it minus the FP32 prefix that ran fastest at batch 1."""
        if self.fp32_prefix == "none":
            return selection, None
        prefixes = float_prefix.candidate_prefixes(proto)
        if not prefixes:
            self.note("fp32_prefix: no prefix to try (no point where a single 4-D tensor carries the whole network forward)")
            return selection, None
        choices = {"none": selection} | {
            f"up to {prefix.last}": dataclasses.replace(selection, exclude=[*selection.exclude, *prefix.nodes]) for prefix in prefixes
        }
        feeds = {name: array[:1] for name, array in self.evaluation_feeds(model).items()}
        quantized = {label: quantize(chosen) for label, chosen in choices.items()}
        label, medians = float_prefix.fastest(quantized, feeds)
        self.context.details["fp32_prefix"] = {"chosen": label, "batch": 1, "latency_ms": medians}
        timings = ", ".join(f"{name} {ms:.3f} ms" for name, ms in medians.items())
        self.note(f"kept {'no' if label == 'none' else 'the nodes ' + label} in FP32: the fastest at batch 1 here, "
                  f"or the shortest within 3% of it ({timings})")
        return choices[label], quantized[label]


def with_hard_activations(model: ir.Model, selection: ort_bridge.Selection) -> tuple[ir.Model, dict[str, int]]:
    """A copy of ``model`` with the hard activations of the Convs ``selection`` quantizes rewritten; counts by kind."""
    copy = io.clone(model)
    kept = {node.name for node in copy.graph if node.op_type == "Conv" and not selection.covers(node.name)}
    return copy, rewrite_hard_activations(copy, selection.op_types, kept)
