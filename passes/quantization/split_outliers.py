"""``split-outliers``: give a MatMul's few outlier input channels an FP32 branch of their own.

Dynamic INT8 quantizes an activation with one scale for the whole tensor, so one channel peaking
far above the median channel leaves the rest a handful of levels. When that
activation is computed channel by channel from another MatMul (``W2·f(W1·x + b)``, the FFN of a
transformer, with ``f`` element-wise such as GELU), its channels can be split without copying
anything: the outlier columns of ``W1`` (and of the bias), the element-wise ops, and the matching
rows of ``W2`` become a small branch left in FP32 (LLM.int8()'s decomposition, done once on the
graph), the other channels a branch of the same shape as before, and the two results are added.
The rewrite is exact in FP32 up to summation order; the quantizers leave nodes whose names end
in ``/outliers`` in FP32.

Why not ``smooth`` here: SmoothQuant divides a channel by its scale, which also scales GELU's
negative tail (down to −0.17) and costs a Mul over the widest activation. Measured on
all-MiniLM-L6-v2 (250 held-out sentences, ``tools/bench_quantization.py``): with the FFN outputs
split instead of smoothed, 1 − mean embedding cosine of dynamic INT8 falls from 1.6e-3 to 0.8e-3,
at the same latency.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from onnxcompress.calibration.activations import channel_peaks
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.exclude import excluded_nodes, of_type
from onnxcompress.passes.initializers import add_initializer, drop_if_unused
from onnxcompress.passes.quantization.support.selection import FLOAT_BRANCH_SUFFIX

# Ops that map channel c of their inputs to channel c of their output, whatever else they read.
ELEMENTWISE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Erf", "Tanh", "Sigmoid", "Relu", "LeakyRelu", "Elu",
    "Selu", "Softplus", "Gelu", "HardSigmoid", "HardSwish", "Clip", "Neg", "Abs", "Identity", "Min", "Max",
})


@dataclasses.dataclass(frozen=True)
class SplitPair:
    """A MatMul ``second`` reading ``f(first(x))`` through the element-wise nodes ``between`` (in graph order)."""

    first: ir.Node
    between: list[ir.Node]
    second: ir.Node

    @property
    def activation(self) -> ir.Value:
        """The tensor whose channels are split: the second MatMul's input."""
        return self.second.inputs[0]


class SplitOutlierChannels(CompressionPass):
    """Move the largest input channels of FFN-like MatMul pairs into an FP32 branch; exact in FP32.

    Run it on calibration data before ``quantize-dynamic``. ``channels`` is the most channels split
    per activation; a channel is split only if its peak is at least ``min_ratio`` times the median
    channel's peak.
    """

    name = "split-outliers"
    prepares = ("quantize-dynamic", "quantize-static")

    def __init__(
        self,
        *,
        channels: Annotated[int, "most outlier channels moved into the FP32 branch per activation"] = 4,
        min_ratio: Annotated[float, "split a channel only if its calibrated peak is at least this many times the median channel's "
                                    "(at least 1)"] = 4.0,
        exclude: Annotated[list[str] | None, "glob patterns (a|b) of MatMul node names never split; a pattern matching no MatMul is an error"] = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.min_ratio = min_ratio
        self.exclude = exclude
        self.require(channels >= 1, "channels", "at least 1")
        self.require(min_ratio >= 1.0, "min_ratio", "at least 1")

    def calibration_need(self) -> str | None:
        """Outlier channels are found on activations."""
        return "outliers are found on activations"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Split every MatMul pair whose shared activation has outlier channels."""
        LiftConstantsToInitializersPass(size_limit=0)(model)  # exporters write GELU's scalars as Constant nodes
        pairs = splittable_pairs(model, set(excluded_nodes(self, model, of_type("MatMul"))))
        self.context.details.update(split={})
        if not pairs:
            self.note("no MatMul reading another MatMul through element-wise ops only: nothing to split")
            return ir.passes.PassResult(model, modified=False)
        peaks = channel_peaks(model, self.context.calibration, [p.activation.name for p in pairs])
        split, chained = self._split_pairs(model.graph, pairs, peaks)
        self.context.details.update(split=split)
        self.note(f"split {sum(split.values())} outlier channels of {len(split)} of {len(pairs)} MatMul pairs into FP32 branches"
                  f" (at most {self.channels} each, peak >= {self.min_ratio}x the median channel)")
        if chained:
            self.note(f"left {len(chained)} MatMul pairs alone whose first MatMul was already split as the second of"
                      f" the pair before it (chained MatMuls): {', '.join(chained)}")
        return ir.passes.PassResult(model, modified=bool(split))

    def _split_pairs(self, graph: ir.Graph, pairs: list[SplitPair], peaks: dict[str, np.ndarray]) -> tuple[dict[str, int], list[str]]:
        """Split each pair with outlier channels; returns the channels split per second MatMul, and the pairs left
        alone because a MatMul of theirs was already rewritten (in ``W3·f(W2·f(W1·x))`` the middle MatMul is the
        second of one pair and the first of the next, and only one of the two can be split)."""
        split, rewritten, chained = {}, set(), []
        for pair in pairs:
            if {id(pair.first), id(pair.second)} & rewritten:
                chained.append(pair.second.name)
                continue
            outliers = outlier_channels(peaks[pair.activation.name], self.channels, self.min_ratio)
            if len(outliers):
                split_pair(graph, pair, outliers)
                split[pair.second.name] = len(outliers)
                rewritten |= {id(pair.first), id(pair.second)}
        return split, chained


def splittable_pairs(model: ir.Model, excluded: set[str]) -> list[SplitPair]:
    """MatMul pairs (constant 2-D float weights) linked only by element-wise nodes with per-channel constants."""
    pairs = []
    for node in model.graph:
        if node.op_type == "MatMul" and node.name not in excluded and _weight(node) is not None:
            pair = _pair_ending_at(node)
            if pair is not None and pair.first.name not in excluded:
                pairs.append(pair)
    return pairs


def _pair_ending_at(second: ir.Node) -> SplitPair | None:
    """The pair whose second MatMul is ``second``, or None when its input is not an element-wise image of one MatMul."""
    channels = _weight(second).shape[0]
    first, between, pending, seen = None, [], [second.inputs[0]], set()
    while pending:
        producer = pending.pop().producer()
        if producer is None:
            return None
        if id(producer) in seen:
            continue
        seen.add(id(producer))
        if producer.op_type == "MatMul" and _weight(producer) is not None and _weight(producer).shape[1] == channels:
            if first is not None:
                return None
            first = producer
        elif _is_channelwise(producer, channels):
            between.append(producer)
            pending.extend(v for v in producer.inputs if v is not None and v.const_value is None)
        else:
            return None
    if first is None or not _used_only_inside(first, between, second):
        return None
    order = {id(n): i for i, n in enumerate(second.graph)}
    return SplitPair(first, sorted(between, key=lambda n: order[id(n)]), second)


def _is_channelwise(node: ir.Node, channels: int) -> bool:
    """True for a standard element-wise op whose constant inputs are scalars or per-channel vectors."""
    return (node.domain in ("", "ai.onnx") and node.op_type in ELEMENTWISE_OPS and len(node.outputs) == 1
            and all(_per_channel_or_scalar(v.const_value, channels) for v in node.inputs if v is not None and v.const_value is not None))


def _weight(node: ir.Node) -> ir.TensorProtocol | None:
    """The MatMul's constant 2-D float weight, if it has one."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    tensor = None if weight is None else weight.const_value
    if tensor is None or tensor.dtype != ir.DataType.FLOAT or len(tensor.shape) != 2:
        return None
    return tensor


def _per_channel_or_scalar(tensor: ir.TensorProtocol, channels: int) -> bool:
    """True for a scalar or a tensor that varies along the last axis only, over ``channels``."""
    dims = list(tensor.shape)
    return all(d == 1 for d in dims[:-1]) and (not dims or dims[-1] in (1, channels))


def _used_only_inside(first: ir.Node, between: list[ir.Node], second: ir.Node) -> bool:
    """True when nothing outside the pair reads the first MatMul's or the element-wise nodes' outputs."""
    inside = {id(n) for n in between} | {id(second)}
    for node in [first, *between]:
        value = node.outputs[0]
        if value.is_graph_output() or any(id(user) not in inside for user, _ in value.uses()):
            return False
    return True


def outlier_channels(peaks: np.ndarray, most: int, min_ratio: float) -> np.ndarray:
    """Up to ``most`` channels (sorted) whose peak is at least ``min_ratio`` times the median peak, largest first."""
    threshold = min_ratio * float(np.median(peaks))
    ranked = np.argsort(-peaks, kind="stable")[:most]
    return np.sort(ranked[peaks[ranked] >= threshold]) if threshold > 0 else np.sort(ranked[peaks[ranked] > 0])


def split_pair(graph: ir.Graph, pair: SplitPair, outliers: np.ndarray) -> None:
    """Replace ``pair`` by an INT8-bound branch over the other channels and an FP32 branch over ``outliers``, summed.

    A bias Add after the second MatMul stays right after the INT8 branch, where ORT fuses it into the
    integer kernel; the FP32 branch is added after it.
    """
    channels = _weight(pair.second).shape[0]
    inliers = np.setdiff1d(np.arange(channels), outliers)
    inlier_sum = _branch(graph, pair, inliers, "inliers")
    outlier_sum = _branch(graph, pair, outliers, FLOAT_BRANCH_SUFFIX.lstrip("/"))
    result = pair.second.outputs[0]
    bias_add = _sole_bias_add(result)
    result.replace_all_uses_with(inlier_sum, replace_graph_outputs=True)
    if inlier_sum.is_graph_output():
        inlier_sum.name, inlier_sum.type, inlier_sum.shape = result.name, result.type, result.shape
    _add_after(graph, inlier_sum if bias_add is None else bias_add.outputs[0], outlier_sum, f"{pair.second.name}/sum")
    old_weights = [pair.first.inputs[1], pair.second.inputs[1]]
    constants = [v for n in pair.between for v in n.inputs if v is not None and v.const_value is not None]
    graph.remove([pair.second, *reversed(pair.between), pair.first], safe=True)
    for value in old_weights + constants:
        drop_if_unused(graph, value)


def _sole_bias_add(value: ir.Value) -> ir.Node | None:
    """The Add adding a constant to ``value`` when that is its only reader (and it is no graph output)."""
    uses = list(value.uses())
    if value.is_graph_output() or len(uses) != 1:
        return None
    user, index = uses[0]
    other = user.inputs[1 - index] if user.op_type == "Add" and len(user.inputs) == 2 else None
    return user if other is not None and other.const_value is not None else None


def _add_after(graph: ir.Graph, value: ir.Value, addend: ir.Value, name: str) -> None:
    """Make every reader of ``value`` (and the graph outputs) read ``value + addend`` instead."""
    readers = list(value.uses())
    total = ir.node("Add", [value, addend], name=name)
    total.outputs[0].dtype = ir.DataType.FLOAT
    order = {id(node): index for index, node in enumerate(graph)}
    graph.insert_after(max(value.producer(), addend.producer(), key=lambda node: order[id(node)]), total)
    for user, index in readers:
        user.replace_input_with(index, total.outputs[0])
    if value.is_graph_output():
        position = list(graph.outputs).index(value)
        graph.outputs[position] = total.outputs[0]
        original, value.name = value.name, f"{value.name}_inliers"
        total.outputs[0].name, total.outputs[0].type, total.outputs[0].shape = original, value.type, value.shape
    else:
        total.outputs[0].name = f"{value.name}_with_outliers"


def _branch(graph: ir.Graph, pair: SplitPair, channels: np.ndarray, tag: str) -> ir.Value:
    """Nodes computing ``pair`` over ``channels`` only, inserted before its second MatMul; returns the branch's output."""
    first_weight, second_weight = _weight(pair.first).numpy(), _weight(pair.second).numpy()
    nodes = [ir.node("MatMul", [pair.first.inputs[0], add_initializer(graph, f"{pair.first.inputs[1].name}_{tag}", first_weight[:, channels])],
                     name=f"{pair.first.name}/{tag}")]
    renamed = {id(pair.first.outputs[0]): nodes[0].outputs[0]}
    for node in pair.between:
        inputs = [_branch_input(graph, value, renamed, channels, tag) for value in node.inputs]
        attributes = [ir.Attr(a.name, a.type, a.value) for a in node.attributes.values()]
        copy = ir.Node(node.domain, node.op_type, inputs, attributes, version=node.version, name=f"{node.name}/{tag}")
        renamed[id(node.outputs[0])] = copy.outputs[0]
        nodes.append(copy)
    second = ir.node("MatMul", [renamed[id(pair.activation)], add_initializer(graph, f"{pair.second.inputs[1].name}_{tag}", second_weight[channels])],
                     name=f"{pair.second.name}/{tag}")
    nodes.append(second)
    for node in nodes:
        node.outputs[0].dtype = ir.DataType.FLOAT
    graph.insert_before(pair.second, nodes)
    return second.outputs[0]


def _branch_input(graph: ir.Graph, value: ir.Value | None, renamed: dict[int, ir.Value], channels: np.ndarray, tag: str) -> ir.Value | None:
    """The branch's version of an element-wise node's input: its own copy, a per-channel constant sliced, or as is."""
    if value is None or id(value) in renamed:
        return None if value is None else renamed[id(value)]
    array = value.const_value.numpy()
    if array.ndim and array.shape[-1] > 1:
        return add_initializer(graph, f"{value.name}_{tag}", array[..., channels])
    return value
