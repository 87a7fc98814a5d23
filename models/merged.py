"""A decoder exported with its key-value cache, merged as Optimum ships seq2seq and older LM decoders.

Optimum's ``decoder_model_merged.onnx`` holds a decoder's first step and its later steps in the two branches of
one ``If`` switched by a ``use_cache_branch`` input, both reading the weights from the outer graph: fed false, the
branch without a cache runs (the caches given are not read); fed true, the branch that reads them. ``merge_decoder``
builds that layout from one export with its cache: the cache branch is the export as it is, the first-step branch
the same nodes reading every cache cut to no positions and the mask cut to the new tokens. Nothing is downloaded.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

BRANCH = "use_cache_branch"
CACHE_AXIS = 2  # [batch, heads, positions, head size]


def merge_decoder(cached: onnx.ModelProto, *, mask: str = "attention_mask", cache_prefix: str = "past_key_values") -> onnx.ModelProto:
    """``cached`` (inputs ``input_ids``, ``mask``, caches named ``cache_prefix...``) as one ``If`` on ``use_cache_branch``."""
    graph = cached.graph
    if any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for node in graph.node for attribute in node.attribute):
        raise ValueError("the decoder already holds subgraphs; merge_decoder copies a flat graph")
    caches = [value.name for value in graph.input if value.name.startswith(cache_prefix)]
    outer = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer}
    then_branch = _branch(graph, "cached/", outer, cut={})
    first_step = [*_cut_caches(caches, "first/"), *_cut_mask(mask, "first/")]
    else_branch = _branch(graph, "first/", outer, cut={name: f"first/{name}" for name in [*caches, mask]}, before=first_step)
    merged_if = helper.make_node("If", [BRANCH], [value.name for value in graph.output], name="optimum::if",
                                 then_branch=then_branch, else_branch=else_branch)
    inputs = [*graph.input, helper.make_tensor_value_info(BRANCH, TensorProto.BOOL, [1])]
    merged = helper.make_graph([merged_if], f"{graph.name}_merged", inputs, list(graph.output), list(graph.initializer))
    model = helper.make_model(merged, opset_imports=list(cached.opset_import), ir_version=cached.ir_version)
    onnx.checker.check_model(model)
    return model


def _branch(graph: onnx.GraphProto, prefix: str, outer: set[str], cut: dict[str, str], before: list[onnx.NodeProto] = ()) -> onnx.GraphProto:
    """The nodes of ``graph`` with the values they compute renamed under ``prefix`` (a branch may not redefine an
    outer name) and the inputs in ``cut`` read from their cut copies, ``before`` ahead of them."""

    def renamed(name: str) -> str:
        return name if not name else cut.get(name, name if name in outer else prefix + name)

    nodes = [*before]
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        copy.input[:] = [renamed(name) for name in node.input]
        copy.output[:] = [renamed(name) for name in node.output]
        nodes.append(copy)
    outputs = [onnx.ValueInfoProto() for _ in graph.output]
    for output, value in zip(outputs, graph.output):
        output.CopyFrom(value)
        output.name = renamed(value.name)
    return helper.make_graph(nodes, prefix.rstrip("/"), [], outputs)


def _cut_caches(caches: list[str], prefix: str) -> list[onnx.NodeProto]:
    """Each cache sliced to no positions: the first step's branch reads none of what it is given."""
    zero = helper.make_node("Constant", [], [f"{prefix}zero"], value=helper.make_tensor("zero", TensorProto.INT64, [1], [0]))
    axis = helper.make_node("Constant", [], [f"{prefix}cache_axis"], value=helper.make_tensor("axis", TensorProto.INT64, [1], [CACHE_AXIS]))
    cuts = [helper.make_node("Slice", [name, f"{prefix}zero", f"{prefix}zero", f"{prefix}cache_axis"], [prefix + name]) for name in caches]
    return [zero, axis, *cuts]


def _cut_mask(mask: str, prefix: str) -> list[onnx.NodeProto]:
    """The mask's last ``input_ids`` length positions: the new tokens, once the cached ones are dropped."""
    return [
        helper.make_node("Shape", ["input_ids"], [f"{prefix}ids_shape"], start=1, end=2),
        helper.make_node("Neg", [f"{prefix}ids_shape"], [f"{prefix}mask_start"]),
        helper.make_node("Constant", [], [f"{prefix}mask_end"], value=helper.make_tensor("end", TensorProto.INT64, [1], [2**62])),
        helper.make_node("Constant", [], [f"{prefix}mask_axis"], value=helper.make_tensor("axis", TensorProto.INT64, [1], [1])),
        helper.make_node("Slice", [mask, f"{prefix}mask_start", f"{prefix}mask_end", f"{prefix}mask_axis"], [prefix + mask]),
    ]
