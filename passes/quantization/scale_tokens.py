"""``scale-tokens``: give a MatMul activation one INT8 scale per token (row) instead of one per tensor.

Dynamic INT8 quantizes a MatMul's activation with one scale for the whole tensor, and ORT's fused
integer MatMuls take no per-row scale, so tokens whose values stay small beside the few largest
keep only a handful of levels (BERT's GELU outputs: rows differ in range by 10x and more).
``X·W = r ⊙ ((X / r)·W)``, with ``r`` each row's largest |value|, is exact, and the quantizer then
sees rows of one range: per-token quantization on per-tensor kernels. The cost is a few small ops
per activation (ReduceMax, Max, Reciprocal, Mul; Abs too unless the activation is one-sided, as
GELU's outputs are) and one Mul per MatMul output; from opset 21 ``quantize-dynamic`` folds the
division into one per-row QuantizeLinear (``row_quantizers.py``). It is spent only where the
dynamic-INT8 error simulated on the first calibration batch, for the kernel ORT runs on this CPU
(``target.cpu_kernel``), falls by enough: the GELU outputs and attention contexts of all-MiniLM-L6-v2;
its LayerNorm outputs, already one scale per token, gain little.

ORT's ``quantize_dynamic`` and onnxscript have no equivalent. On all-MiniLM-L6-v2 (after
``split-outliers`` and ``smooth``, GPTQ weights) it lowers 1 − cosine and raises nearest-neighbour
agreement most at batch 8, where one per-tensor scale spans several sentences; its cost came down
once the per-row quantizers replaced the division's Mul. The figures are in ``docs/measured.md`` and
``docs/benchmarks/bench_quantization.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.calibration.activations import first_batch_activations
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.exclude import excluded_nodes, of_type
from onnxcompress.passes.initializers import add_initializer
from onnxcompress.passes.quantization.smooth import dynamic_int8_error, sample_runs, smoothable_groups
from onnxcompress.passes.quantization.support.target import Int8Kernel, cpu_kernel

TINY = 1e-12  # floor of a row's scale, so an all-zero row divides by something
ONE_SIDED_LOW = 0.25  # a one-sided activation's rows, once scaled, stay above -ONE_SIDED_LOW (``row_quantizers`` relies on it)
REDUCE_AXES_AS_INPUT = 18  # ReduceMax takes its axes as an input from opset 18


class ScaleTokens(CompressionPass):
    """Scale each token's row of chosen MatMul activations to one range and the outputs back; exact in FP32.

    Run it on calibration data after ``smooth`` and before ``quantize-dynamic``. An activation is
    chosen when per-token scales cut its simulated INT8 error by at least ``min_cut`` times the
    largest error any activation of the model has with one scale per tensor.
    """

    name = "scale-tokens"
    prepares = ("quantize-dynamic", "quantize-static")

    def __init__(
        self,
        *,
        min_cut: Annotated[float, "scale an activation only where per-token scales cut its simulated INT8 error by at least this "
                                  "fraction, in [0, 1], of the model's worst per-tensor error"] = 0.03,
        exclude: Annotated[list[str] | None, "glob patterns (a|b) of MatMul node names left alone; a pattern matching no MatMul is an error"] = None,
    ) -> None:
        super().__init__()
        self.min_cut = min_cut
        self.exclude = exclude
        self.require(0.0 <= min_cut <= 1.0, "min_cut", "in [0, 1]")

    def calibration_need(self) -> str | None:
        """Where per-token scales pay is measured on activations."""
        return "it measures where per-token scales pay"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite every activation whose simulated INT8 error per-token scales cut enough."""
        groups = smoothable_groups(model, set(excluded_nodes(self, model, of_type("MatMul"))))
        if not groups:
            self.note("no MatMul with a constant 2-D weight to scale")
            return ir.passes.PassResult(model, modified=False)
        samples = first_batch_activations(model, self.context.calibration, list(groups))
        kernel = cpu_kernel()
        effects = {name: simulate(samples[name], groups[name], kernel) for name in groups}
        worst = max(effect.per_tensor for effect in effects.values())
        chosen = [name for name, effect in effects.items() if effect.per_tensor - effect.per_token >= self.min_cut * worst > 0]
        opset = io.default_opset(model)
        for name in chosen:
            scale_rows(model.graph, groups[name], effects[name].floor, opset)
        self.context.details.update(activations=len(chosen), errors={
            name: {"per_tensor": effects[name].per_tensor, "per_token": effects[name].per_token} for name in chosen})
        self.note(f"per-token scales on {len(chosen)} of {len(groups)} activations feeding {sum(len(groups[n]) for n in chosen)} "
                  f"MatMuls (simulated INT8 error cut by at least {self.min_cut} of the worst, {worst:.2g})")
        return ir.passes.PassResult(model, modified=bool(chosen))


@dataclasses.dataclass(frozen=True)
class TokenScaleEffect:
    """Simulated dynamic-INT8 error of an activation's MatMuls with one scale per tensor and per token.

    ``floor`` is set for a one-sided activation (GELU's outputs are never below -0.17): each row's
    scale is then ``max(row max, floor)``, which bounds it as ``|row|`` would without an ``Abs`` pass,
    and, the floor being the most negative value over ``ONE_SIDED_LOW``, keeps scaled rows in
    [-ONE_SIDED_LOW, 1].
    """

    per_tensor: float
    per_token: float
    floor: float | None


def simulate(sample: np.ndarray, nodes: list[ir.Node], kernel: Int8Kernel) -> TokenScaleEffect:
    """The effect of per-token scales on ``nodes``' INT8 error on ``kernel``, simulated on a calibration ``sample`` of their activation."""
    runs = sample_runs(sample)
    weights = [node.inputs[1].const_value.numpy() for node in nodes]
    references = [runs @ w for w in weights]
    floor = one_sided_floor(runs)
    rows = np.abs(runs).max(axis=-1, keepdims=True) if floor is None else np.maximum(runs.max(axis=-1, keepdims=True), floor)
    return TokenScaleEffect(
        per_tensor=dynamic_int8_error(runs, weights, references, kernel),
        per_token=dynamic_int8_error(runs, weights, references, kernel, row_scales=np.maximum(rows, TINY)),
        floor=floor,
    )


def one_sided_floor(runs: np.ndarray) -> float | None:
    """The largest negative magnitude of any row over ``ONE_SIDED_LOW``, when that floor stays under the typical
    row maximum (else None: the activation is treated as two-sided)."""
    floor = max(float(-runs.min()), TINY) / ONE_SIDED_LOW
    return floor if floor <= float(np.median(runs.max(axis=-1))) else None


def scale_rows(graph: ir.Graph, nodes: list[ir.Node], floor: float | None, opset: int) -> None:
    """Make ``nodes`` read their activation divided by a per-row scale and multiply their outputs back by it."""
    activation = nodes[0].inputs[0]
    prefix = f"{activation.name}_token"
    added: list[ir.Node] = []

    def add(op: str, inputs: list[ir.Value], suffix: str, **attributes) -> ir.Value:
        node = ir.node(op, inputs, attributes=attributes, name=f"{prefix}_{suffix}")
        node.outputs[0].name = f"{prefix}_{suffix}"
        node.outputs[0].dtype = ir.DataType.FLOAT
        added.append(node)
        return node.outputs[0]

    bounded = activation if floor is not None else add("Abs", [activation], "abs")
    if opset >= REDUCE_AXES_AS_INPUT:
        peak = add("ReduceMax", [bounded, add_initializer(graph, f"{prefix}_axes", np.array([-1], dtype=np.int64))], "peak", keepdims=1)
    else:
        peak = add("ReduceMax", [bounded], "peak", axes=[-1], keepdims=1)
    lowest = add_initializer(graph, f"{prefix}_floor", np.array(floor if floor is not None else TINY, dtype=np.float32))
    scale = add("Max", [peak, lowest], "scale")
    scaled = add("Mul", [activation, add("Reciprocal", [scale], "inverse")], "scaled")
    graph.insert_before(nodes[0], added)
    for node in nodes:
        _multiply_output_back(graph, node, scale)
        node.replace_input_with(0, scaled)


def _multiply_output_back(graph: ir.Graph, node: ir.Node, scale: ir.Value) -> None:
    """Route ``node``'s consumers (and the graph output it may be, under the same name) through a Mul by ``scale``."""
    output = node.outputs[0]
    restore = ir.node("Mul", [output, scale], name=f"{node.name}_token_restore")
    restored = restore.outputs[0]
    restored.dtype, restored.shape = ir.DataType.FLOAT, output.shape
    output.replace_all_uses_with(restored, replace_graph_outputs=True)
    restore.replace_input_with(0, output)
    restored.name, output.name = output.name, f"{output.name}_per_token"
    graph.insert_after(node, restore)
