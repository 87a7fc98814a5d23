"""``upcast``: a model that computes in float16 or bfloat16 computes in float32, its interface kept.

Models exported after ``model.half()``, or with bfloat16 weights, are made for GPUs. On a CPU they are a dead end:
ONNX Runtime's INT8 quantizers take FP32 graphs, its CPU provider has few half-precision kernels, and a half-precision
graph gives pruning's least-squares fits and ``recover`` coarse arithmetic. This pass turns every half-precision
weight, constant, value type, ``Cast`` target and ``dtype`` attribute into float32, in subgraphs and functions too,
and drops the casts that become no-ops (float16 storage cast to float32 on use). The model's own half-precision
inputs and outputs stay as they were, each behind a ``Cast``: a drop-in replacement, which every later check of the
chain feeds as it fed the input. Float32 holds every float16 and bfloat16 value exactly, so the outputs change only
by the roundings to half precision the graph no longer makes inside.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx_ir as ir

from onnxcompress import walk
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.names import unused_name
from onnxcompress.passes.shapes import infer_shapes

HALF_TYPES = frozenset({ir.DataType.FLOAT16, ir.DataType.BFLOAT16})


def half_precision_weights(model: ir.Model) -> list[ir.Value]:
    """Float16 and bfloat16 initializers that some node computes with (weights only stored in half precision,
    every reader a ``Cast``, are float32 to the ops that use them): what makes a model compute in half precision."""
    return [value for value in model.graph.initializers.values()
            if value.dtype in HALF_TYPES and any(node.op_type != "Cast" for node, _ in value.uses())]


class Upcast(CompressionPass):
    """Compute in float32 a model that computes in float16 or bfloat16 (for ORT's CPU kernels, INT8 and training)."""

    name = "upcast"
    exact = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Retype every half-precision tensor of the model to float32 but its interface, drop the no-op casts."""
        graph = model.graph
        kept = {id(v) for v in (*graph.inputs, *graph.outputs) if v.dtype in HALF_TYPES}
        retyped = sum(_retype(value) for value in _values(model) if id(value) not in kept)
        converted = sum(_upcast_tensors(value) for value in _values(model) if id(value) not in kept)
        targets = sum(_upcast_attributes(node) for node in _nodes(model))
        interface = _cast_inputs(graph, kept) + _cast_outputs(graph, kept)
        if not (retyped or targets or interface):
            self.note("nothing computes in float16 or bfloat16")
            return ir.passes.PassResult(model, modified=False)
        infer_shapes(model)  # types of the values an export left untyped, which no-op casts are found by
        dropped = _drop_noop_casts(model)
        self.context.details.update(values_retyped=retyped, weights_upcast=converted, attributes_upcast=targets,
                                    casts_removed=dropped, interface_casts=interface)
        kept_note = f"; {interface} cast(s) keep the half-precision inputs and outputs as they were" if interface else ""
        self.note(f"{retyped} values ({converted} weights or constants) and {targets} cast targets or dtypes now "
                  f"float32, {dropped} no-op casts removed{kept_note}")
        return ir.passes.PassResult(model, modified=True)


def _graphs(model: ir.Model) -> Iterator[ir.Graph | ir.Function]:
    yield from walk.graphs(model.graph)
    for function in model.functions.values():
        yield from walk.graphs(function)


def _nodes(model: ir.Model) -> Iterator[ir.Node]:
    for graph in _graphs(model):
        yield from graph


def _values(model: ir.Model) -> Iterator[ir.Value]:
    """Every value of every graph: inputs, outputs, initializers and node outputs (a value may come twice)."""
    for graph in _graphs(model):
        yield from graph.inputs
        yield from graph.outputs
        if isinstance(graph, ir.Graph):
            yield from graph.initializers.values()
        for node in graph:
            yield from node.outputs


def _float32(kind: ir.TypeProtocol) -> ir.TypeProtocol:
    """``kind`` with half-precision elements made float32 (through sequences and optionals)."""
    if isinstance(kind, ir.TensorType):
        return ir.TensorType(ir.DataType.FLOAT) if kind.dtype in HALF_TYPES else kind
    if isinstance(kind, ir.SequenceType):
        return ir.SequenceType(_float32(kind.elem_type))
    if isinstance(kind, ir.OptionalType):
        return ir.OptionalType(_float32(kind.elem_type))
    return kind


def _retype(value: ir.Value) -> bool:
    """Make ``value``'s type float32 where it is half precision; whether it changed."""
    if value.type is None:
        return False
    new = _float32(value.type)
    if new == value.type:
        return False
    value.type = new
    return True


def _as_float32(tensor: ir.TensorProtocol) -> ir.Tensor:
    return ir.tensor(np.asarray(tensor.numpy(), dtype=np.float32), name=tensor.name)


def _upcast_tensors(value: ir.Value) -> bool:
    """Make ``value``'s constant data float32 where it is half precision; whether it changed."""
    tensor = value.const_value
    if tensor is None or tensor.dtype not in HALF_TYPES:
        return False
    value.const_value = _as_float32(tensor)
    return True


def _upcast_attributes(node: ir.Node) -> int:
    """Make ``node``'s half-precision type attributes (``to``, ``dtype``, ``Optional``'s ``type``) and tensor
    attributes (``Constant``'s ``value``) float32; how many changed."""
    changed = 0
    for name, attribute in list(node.attributes.items()):
        if attribute.type == ir.AttributeType.INT and name in ("to", "dtype") and attribute.value in HALF_TYPES:
            node.attributes[name] = ir.AttrInt64(name, ir.DataType.FLOAT)
        elif attribute.type == ir.AttributeType.TENSOR and attribute.value.dtype in HALF_TYPES:
            node.attributes[name] = ir.AttrTensor(name, _as_float32(attribute.value))
        elif attribute.type == ir.AttributeType.TYPE_PROTO and _float32(attribute.value.type) != attribute.value.type:
            node.attributes[name] = ir.AttrTypeProto(name, ir.TypeAndShape(_float32(attribute.value.type), attribute.value.shape))
        else:
            continue
        changed += 1
    return changed


def _cast(value: ir.Value, to: ir.DataType, name: str) -> ir.Node:
    node = ir.node("Cast", [value], attributes={"to": to}, name=name)
    node.outputs[0].type = ir.TensorType(to)
    node.outputs[0].shape = value.shape
    return node


def _cast_inputs(graph: ir.Graph, kept: set[int]) -> int:
    """Put a ``Cast`` to float32 after each half-precision graph input in ``kept``; its readers read the cast."""
    count = 0
    for value in graph.inputs:
        if id(value) not in kept:
            continue
        uses = list(value.uses())
        cast = _cast(value, ir.DataType.FLOAT, unused_name(graph, f"{value.name}_upcast"))
        cast.outputs[0].name = unused_name(graph, f"{value.name}_float32")
        for node, index in uses:
            node.replace_input_with(index, cast.outputs[0])
        if len(graph):
            graph.insert_before(graph[0], cast)
        else:
            graph.append(cast)
        count += 1
    return count


def _cast_outputs(graph: ir.Graph, kept: set[int]) -> int:
    """Give each half-precision graph output in ``kept`` a ``Cast`` back to its type under its own name (the value
    it came from is renamed and made float32); an output that is a graph input stays as it is."""
    casts: dict[int, ir.Value] = {}
    for index, value in enumerate(graph.outputs):
        if id(value) in casts:
            graph.outputs[index] = casts[id(value)]
        elif id(value) in kept and not value.is_graph_input():
            name, dtype = value.name, value.dtype
            value.name = unused_name(graph, f"{name}_float32")
            _retype(value)
            _upcast_tensors(value)
            cast = _cast(value, dtype, unused_name(graph, f"{name}_downcast"))
            cast.outputs[0].name = name
            graph.append(cast)
            graph.outputs[index] = casts[id(value)] = cast.outputs[0]
    return len(casts)


def _drop_noop_casts(model: ir.Model) -> int:
    """Remove ``Cast`` nodes whose input already has the target type: readers read the input, and a graph output
    the cast gave is given by the input's producer under the output's name (unless the input is an outer value, a
    graph input or output, or a constant, which then keeps its cast). How many went."""
    removed = 0
    for node in list(_nodes(model)):
        if node.op_type != "Cast" or node.domain not in ("", "ai.onnx") or node.inputs[0] is None:
            continue
        source, output = node.inputs[0], node.outputs[0]
        if source.dtype is None or source.dtype != node.attributes.get_int("to"):
            continue
        if output.is_graph_output() and not _hand_output(node.graph, output, source):
            continue
        output.replace_all_uses_with(source)
        node.graph.remove(node, safe=True)
        removed += 1
    return removed


def _hand_output(graph: ir.Graph, output: ir.Value, source: ir.Value) -> bool:
    """Make ``source`` the graph output ``output`` is, under its name, when a node of ``graph`` computes it and it is
    no graph input or output itself; whether it was done."""
    producer = source.producer()
    if producer is None or producer.graph is not graph or source.is_graph_output() or source.is_graph_input():
        return False
    for index, value in enumerate(graph.outputs):
        if value is output:
            graph.outputs[index] = source
    name = output.name
    output.name = None
    source.name = name
    return True
