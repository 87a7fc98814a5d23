"""``smooth``: move per-channel activation outliers into the weights of the MatMuls that read them.

Dynamic INT8 quantizes a MatMul's activation with one scale for the whole tensor, so a few
outlier channels (BERT's LayerNorm and GELU outputs reach 20–30 while most channels stay
under 2) leave the other channels a handful of levels. ``X·W = (X/s)·(s·W)`` is exact, so
dividing each input channel by ``s = max|X|^α / max|W|^(1−α)`` (SmoothQuant) flattens the
activation and puts the range into the weights, which per-channel INT8 handles well.
ORT's ``quantize_dynamic`` has no such step (its ``SmoothQuant`` option is for static QDQ
only, through neural-compressor). On all-MiniLM-L6-v2, dynamic INT8 after ``smooth`` keeps a higher
mean embedding cosine than without it, at the same latency (``docs/benchmarks/bench_quantization.md``).
Real tokens gain; padding positions, which every consumer masks out, lose, so judge fidelity on the
outputs that are used (``fidelity_output`` in the quantization passes).

``1/s`` is one inserted Mul per activation, not folded into the producer: folding it into
GELU's final ``× 0.5`` stops ORT fusing the GELU, which costs more than the Mul. The exception is
an ONNX ``Attention`` output (the context): each of its channels is a softmax-weighted sum of the
same channel of V, so ``1/s`` goes into the columns of V's projection for free (one Mul fewer per
context).

By default (``alpha`` unset) each activation gets the α, or no smoothing at all, that gives its
MatMuls the lowest dynamic-INT8 error simulated on the first calibration batch, with the weight grid and
integer sums of the kernel ORT runs on this CPU (``target.cpu_kernel``: 7-bit weights without VNNI): the
best α differs by layer (the αs chosen on MiniLM are in ``docs/benchmarks/bench_quantization.md``), and
an activation with no outliers left (after ``split-outliers``) is better off without the Mul.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
import onnx_ir as ir

from onnxcompress.calibration.activations import channel_peaks, first_batch_activations
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.exclude import excluded_nodes, of_type
from onnxcompress.passes.initializers import add_initializer, drop_if_unused
from onnxcompress.passes.quantization.support.ranges import U8_LEVELS, u8_scale_and_zero_point
from onnxcompress.passes.quantization.support.selection import is_float_branch
from onnxcompress.passes.quantization.support.target import Int8Kernel, cpu_kernel

SmoothGroups = dict[str, list[ir.Node]]
ALPHA_CHOICES = (0.5, 0.75, 0.85, 0.95)
MIN_GAIN = 0.8  # smooth only if the simulated error falls by a fifth or more
SAMPLE_ROWS = 4096  # rows of the first calibration batch the α choice is simulated on


class SmoothActivations(CompressionPass):
    """Divide MatMul activations by per-channel scales folded into the weights (SmoothQuant); exact in FP32.

    Run it on calibration data before ``quantize-dynamic``; ``alpha`` is how much of each
    channel's range moves into the weights (0: none, 1: all), chosen per activation when unset.
    """

    name = "smooth"
    prepares = ("quantize-dynamic", "quantize-static")

    def __init__(
        self,
        *,
        alpha: Annotated[float | None, "share of each channel's range moved into the weights, in [0, 1] (0: none, 1: all); none: chosen "
                                       "per activation, or no smoothing, by simulating dynamic INT8 on the first calibration batch"] = None,
        exclude: Annotated[list[str] | None, "glob patterns (a|b) of MatMul node names not smoothed; a pattern matching no MatMul is an error"] = None,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.exclude = exclude
        self.require(alpha is None or 0.0 <= alpha <= 1.0, "alpha", "in [0, 1]")

    def calibration_need(self) -> str | None:
        """The smoothing scales come from activation ranges."""
        return "its scales come from activation ranges"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Smooth every group of constant-weight MatMuls sharing an activation."""
        groups = smoothable_groups(model, set(excluded_nodes(self, model, of_type("MatMul"))))
        if not groups:
            self.note("no MatMul with a constant 2-D weight to smooth")
            return ir.passes.PassResult(model, modified=False)
        peaks = channel_peaks(model, self.context.calibration, list(groups))
        samples = first_batch_activations(model, self.context.calibration, list(groups)) if self.alpha is None else {}
        kernel = cpu_kernel()
        chosen: dict[str, float] = {}
        folded = 0
        for name, nodes in groups.items():
            alpha = self.alpha if self.alpha is not None else best_alpha(samples[name], peaks[name], nodes, kernel)
            if alpha is None:
                continue
            scales = smoothing_scales(peaks[name], weight_peaks(nodes), alpha)
            scale_weights(model.graph, nodes, scales)
            folded += divide_activation(model.graph, nodes, 1.0 / scales)
            chosen[name] = alpha
        self.context.details.update(alpha=self.alpha, activations=len(chosen), alphas=chosen)
        used = ", ".join(f"{a} x{list(chosen.values()).count(a)}" for a in sorted(set(chosen.values())))
        placed = f"{folded} folded into attention value projections, one Mul node each for the rest" if folded else "one Mul node each"
        self.note(f"smoothed {len(chosen)} of {len(groups)} activations feeding "
                  f"{sum(len(groups[n]) for n in chosen)} MatMuls (alpha {used or '-'}; {placed})")
        if len(chosen) < len(groups):
            self.note(f"left {len(groups) - len(chosen)} activations alone: smoothing did not lower their simulated INT8 error")
        return ir.passes.PassResult(model, modified=bool(chosen))


def smoothable_groups(model: ir.Model, excluded: set[str]) -> SmoothGroups:
    """Float activations of the main graph, each with the MatMuls that multiply it by a constant 2-D weight."""
    groups: SmoothGroups = {}
    for node in model.graph:
        if node.op_type != "MatMul" or node.name in excluded or is_float_branch(node.name):
            continue
        activation, weight = node.inputs
        if activation is None or activation.const_value is not None or not _is_float_matrix(weight):
            continue
        groups.setdefault(activation.name, []).append(node)
    return groups


def _is_float_matrix(value: ir.Value | None) -> bool:
    tensor = None if value is None else value.const_value
    return tensor is not None and tensor.dtype == ir.DataType.FLOAT and len(tensor.shape) == 2


def best_alpha(sample: np.ndarray, activation_peaks: np.ndarray, nodes: Sequence[ir.Node], kernel: Int8Kernel) -> float | None:
    """The α of ``ALPHA_CHOICES`` with the lowest dynamic-INT8 error simulated for ``kernel``, or None (no smoothing)
    unless that error is at most ``MIN_GAIN`` times the error without smoothing: the Mul must pay for its time."""
    weights = [node.inputs[1].const_value.numpy() for node in nodes]
    runs = sample_runs(sample)
    references = [runs @ w for w in weights]
    errors, peaks = {}, weight_peaks(nodes)
    for alpha in ALPHA_CHOICES:
        scales = smoothing_scales(activation_peaks, peaks, alpha)
        errors[alpha] = dynamic_int8_error(runs / scales, [w * scales[:, None] for w in weights], references, kernel)
    best = min(errors, key=errors.get)
    return best if errors[best] <= MIN_GAIN * dynamic_int8_error(runs, weights, references, kernel) else None


def sample_runs(sample: np.ndarray) -> np.ndarray:
    """The sample as (runs, rows, channels), one run per item of its first axis, cut to about ``SAMPLE_ROWS`` rows."""
    runs = sample.reshape(sample.shape[0], -1, sample.shape[-1])
    return runs[: max(1, SAMPLE_ROWS // runs.shape[1])]


def dynamic_int8_error(runs: np.ndarray, weights: Sequence[np.ndarray], references: Sequence[np.ndarray], kernel: Int8Kernel,
                       row_scales: np.ndarray | None = None) -> float:
    """Relative squared error of ``runs @ weight`` against ``references`` as ORT's dynamic INT8 computes it on ``kernel``:
    each run quantized to U8 with its own range (DynamicQuantizeLinear, once per run), each weight to S8 per column
    on the kernel's grid, the products summed as the kernel sums them; with ``row_scales``, each row is divided by
    its scale before quantizing and multiplied back after (``scale-tokens``)."""
    scaled = runs if row_scales is None else runs / row_scales
    scale, zero = u8_scale_and_zero_point(scaled.min(axis=(1, 2), keepdims=True), scaled.max(axis=(1, 2), keepdims=True))
    codes = np.clip(np.round(scaled / scale) + zero, 0, U8_LEVELS)
    quantized = (codes - zero) * scale
    restore = 1.0 if row_scales is None else row_scales
    error = total = 0.0
    for weight, reference in zip(weights, references):
        peaks = np.abs(weight).max(axis=0)
        weight_scale = np.where(peaks > 0, peaks / kernel.weight_qmax, 1.0)
        weight_codes = np.round(weight / weight_scale)
        product = quantized @ (weight_codes * weight_scale) - kernel.saturation_loss(codes, weight_codes) * (scale * weight_scale)
        error += float(np.sum((product * restore - reference) ** 2))
        total += float(np.sum(reference ** 2))
    return error / max(total, 1e-30)


def weight_peaks(nodes: Sequence[ir.Node]) -> np.ndarray:
    """Largest |weight| of each input channel (row) over all MatMuls sharing the activation."""
    return np.max([np.abs(node.inputs[1].const_value.numpy()).max(axis=1) for node in nodes], axis=0)


def smoothing_scales(activation_peaks: np.ndarray, weight_peaks: np.ndarray, alpha: float) -> np.ndarray:
    """Per-channel ``s = a^α / w^(1−α)``, 1 where either side is zero, normalised to geometric mean 1."""
    usable = (activation_peaks > 0) & (weight_peaks > 0)
    scales = np.ones_like(activation_peaks, dtype=np.float64)
    scales[usable] = activation_peaks[usable] ** alpha / weight_peaks[usable] ** (1.0 - alpha)
    return (scales / np.exp(np.log(scales).mean())).astype(np.float32)


def scale_weights(graph: ir.Graph, nodes: Sequence[ir.Node], scales: np.ndarray) -> None:
    """Give each MatMul a new weight initializer with row ``k`` multiplied by ``scales[k]`` (the old one goes if unused)."""
    for node in nodes:
        weight = node.inputs[1]
        scaled = weight.const_value.numpy() * scales[:, None]
        node.replace_input_with(1, add_initializer(graph, f"{weight.name}_smoothed", scaled))
        drop_if_unused(graph, weight)


def divide_activation(graph: ir.Graph, nodes: Sequence[ir.Node], inverse: np.ndarray) -> bool:
    """Make ``nodes`` read their activation multiplied by ``inverse``: folded into an Attention's value
    projection (True) where the activation is that Attention's context, else through one new ``Mul``."""
    if fold_into_attention_values(graph, nodes, inverse):
        return True
    activation = nodes[0].inputs[0]
    mul = ir.node("Mul", [activation, add_initializer(graph, f"{activation.name}_smooth_scale", inverse)],
                  name=f"{activation.name}_smooth")
    mul.outputs[0].name = f"{activation.name}_smoothed"
    mul.outputs[0].dtype = ir.DataType.FLOAT
    graph.insert_before(nodes[0], mul)
    for node in nodes:
        node.replace_input_with(0, mul.outputs[0])
    return False


def fold_into_attention_values(graph: ir.Graph, nodes: Sequence[ir.Node], inverse: np.ndarray) -> bool:
    """Multiply the columns (and bias) of V's projection by ``inverse`` when ``nodes`` alone read the context of a
    3-D ONNX ``Attention`` whose V is that projection's output only; False (nothing changed) otherwise."""
    context = nodes[0].inputs[0]
    attention = context.producer()
    if attention is None or attention.op_type != "Attention" or attention.domain != "" or context is not attention.outputs[0]:
        return False
    readers = {use.node for use in context.uses()}
    if context.is_graph_output() or not readers <= set(nodes) or any(out.uses() or out.is_graph_output() for out in attention.outputs[1:]):
        return False
    if attention.attributes.get_int("q_num_heads", 0) != attention.attributes.get_int("kv_num_heads", -1):
        return False  # unset (4-D inputs, channels per head) or grouped heads (a V channel feeds several)
    projection = _value_projection(attention.inputs[2], len(inverse))
    if projection is None:
        return False
    for node, index, array in projection:
        scaled = array * (inverse if array.ndim == 1 else inverse[None, :])
        old = node.inputs[index]
        node.replace_input_with(index, add_initializer(graph, f"{old.name}_smoothed", scaled.astype(array.dtype)))
        drop_if_unused(graph, old)
    return True


def _value_projection(values: ir.Value | None, channels: int) -> list[tuple[ir.Node, int, np.ndarray]] | None:
    """``(node, input index, constant)`` for the weight of ``MatMul(x, W) [+ bias]`` producing ``values`` (read by one
    node), and for its bias; None unless ``values`` is exactly such a projection to ``channels`` channels."""
    if values is None or len(values.uses()) != 1 or values.is_graph_output():
        return None
    producer = values.producer()
    constants: list[tuple[ir.Node, int, np.ndarray]] = []
    if producer is not None and producer.op_type == "Add" and producer.domain == "":
        bias_index = next((i for i, v in enumerate(producer.inputs) if v is not None and v.const_value is not None), None)
        if bias_index is None:
            return None
        bias = producer.inputs[bias_index].const_value.numpy()
        if bias.shape != (channels,) or bias.dtype != np.float32:
            return None
        constants.append((producer, bias_index, bias))
        product = producer.inputs[1 - bias_index]
        if len(product.uses()) != 1 or product.is_graph_output():
            return None
        producer = product.producer()
    if producer is None or producer.op_type != "MatMul" or producer.domain != "" or not _is_float_matrix(producer.inputs[1]):
        return None
    weight = producer.inputs[1].const_value.numpy()
    if weight.shape[1] != channels:
        return None
    return [(producer, 1, weight), *constants]
