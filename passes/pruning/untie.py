"""Give each consumer of a shared weight its own copy before channel analysis.

Exporters share identical tensors (TorchScript routes equal BatchNorm-folded biases through
``Identity`` nodes to every Conv that has them), and a weight stored in float16 is read through one
Cast that every user of it shares. A shared tensor would couple the channels of every
layer using it into one group — wrong grouping, the classic Torch-Pruning complaint — so every use
gets a private initializer first; copies the removal left equal to their source are tied back
afterwards (``retie_unchanged``), so untying never adds parameters by itself.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxcompress.passes.pruning.rules.constants import fresh_name


def _behind_identities(value: ir.Value | None) -> ir.Value | None:
    """The value ``value`` forwards (through any number of Identity nodes, stopping at a constant)."""
    while value is not None and value.const_value is None:
        producer = value.producer()
        if producer is None or producer.op_type != "Identity":
            break
        value = producer.inputs[0]
    return value


def _shared_source(value: ir.Value | None) -> ir.Value | None:
    """The floating-point initializer behind ``value`` (through Identity nodes), if any."""
    value = _behind_identities(value)
    if value is None or value.const_value is None or value.is_graph_input() or not value.const_value.dtype.is_floating_point():
        return None
    return value if value.shape is not None and len(value.shape) else None


def _stored_cast(value: ir.Value | None) -> ir.Node | None:
    """The Cast behind ``value`` (through Identity nodes) that turns a stored weight into the type it is used in
    (float16 storage cast to float32 on use), if any."""
    value = _behind_identities(value)
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "Cast":
        return None
    return producer if _shared_source(producer.inputs[0]) is producer.inputs[0] else None


Tie = tuple[ir.Value, ir.Value]


def untie_weights(model: ir.Model) -> list[Tie]:
    """Give every use of a shared (or Identity-forwarded) weight its own initializer, and of a stored weight's Cast
    its own Cast of its own copy; return (copy, source) pairs."""
    graph = model.graph
    copies: list[Tie] = []
    seen: set[int] = set()
    for node in list(graph):
        for index, value in enumerate(node.inputs):
            cast = _stored_cast(value)
            source = _shared_source(value) if cast is None else cast.inputs[0]
            if source is None:
                continue
            used_as_is = value is source if cast is None else value is cast.outputs[0]
            if used_as_is and id(value) not in seen:
                seen.add(id(value))
                continue
            name = fresh_name(node, f"untied{index}")
            copy = ir.Value(name=name, shape=source.shape, type=source.type, const_value=ir.tensor(source.const_value.numpy(), name=name))
            graph.register_initializer(copy)
            node.replace_input_with(index, copy if cast is None else _cast_before(node, cast, copy))
            copies.append((copy, source))
    if copies:
        RemoveUnusedNodesPass()(model)
    return copies


def _cast_before(node: ir.Node, cast: ir.Node, stored: ir.Value) -> ir.Value:
    """A copy of ``cast`` reading ``stored``, inserted before ``node``; its output."""
    copy = ir.node("Cast", [stored], attributes={"to": cast.attributes.get_int("to")}, name=fresh_name(node, "untied_cast"))
    copy.outputs[0].name, copy.outputs[0].shape, copy.outputs[0].type = copy.name, stored.shape, cast.outputs[0].type
    node.graph.insert_before(node, copy)
    return copy.outputs[0]


def retie_unchanged(model: ir.Model, ties: list[Tie]) -> int:
    """Tie copies of one source that are still equal (to the source or to each other) back into one; return how many.

    A source whose every use was forwarded through ``Identity`` is gone after untying, so an equal
    earlier copy stands in for it; a copy made of such an Identity's own copy counts as a copy of the first source.
    """
    graph = model.graph
    kept: dict[int, list[ir.Value]] = {}
    tied = 0
    sources = {id(copy): source for copy, source in ties}
    for copy, source in ties:
        source = _first_source(source, sources)
        candidates = kept.setdefault(id(source), [source] if _registered(graph, source) else [])
        if not _registered(graph, copy):
            continue
        twin = next((c for c in candidates if _same_tensor(copy, c)), None)
        if twin is None:
            candidates.append(copy)
            continue
        copy.replace_all_uses_with(twin)
        del graph.initializers[copy.name]
        tied += 1
    if tied:
        RemoveUnusedNodesPass()(model)
    return tied


def _first_source(value: ir.Value, sources: dict[int, ir.Value]) -> ir.Value:
    """The weight ``value`` was copied from, through copies of copies (``sources``: each copy's source, by id; an
    Identity-forwarded use is untied twice: the Identity's input, then its reader's)."""
    while id(value) in sources:
        value = sources[id(value)]
    return value


def _registered(graph: ir.Graph, value: ir.Value) -> bool:
    return graph.initializers.get(value.name) is value


def _same_tensor(a: ir.Value, b: ir.Value) -> bool:
    x, y = a.const_value.numpy(), b.const_value.numpy()
    return x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
