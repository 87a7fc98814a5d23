"""Structural checks, the same after every pass of a pipeline and in ``verify``: the onnx checker, strict
shape inference, and the per-op channel rules they let through (ORT loading the model comes on top).

The graph is serialized once for all of them (or not at all when the caller holds it already: a pipeline
step's ``io.Snapshot``), and the channel rules read the shapes strict inference found rather than
inferring them again.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from onnxcompress import io, shape_rules, walk
from onnxcompress.errors import first_line


CHECKER = "onnx checker and strict shape inference"
CHANNEL_RULES = "channel consistency rules"


def structure_problems(model: ir.Model, proto: onnx.ModelProto | None = None) -> dict[str, list[str]]:
    """What each structural check rejects, by check (``CHECKER``, ``CHANNEL_RULES``); empty lists when valid.

    ``proto`` is ``model`` already serialized (``io.to_proto``), when the caller has it (then it fits one protobuf).
    """
    if proto is None and _too_large(model):
        return {CHECKER: [], CHANNEL_RULES: []}
    proto = proto if proto is not None else io.to_proto(model)
    problems, inferred = _checked(proto)
    return {CHECKER: problems, CHANNEL_RULES: shape_rules.shape_problems(model, proto=proto, inferred=inferred)}


def graph_problems(model: ir.Model, proto: onnx.ModelProto | None = None) -> list[str]:
    """What the onnx checker (full check) and strict shape inference reject; empty when valid."""
    if proto is None and _too_large(model):
        return []
    return _checked(proto if proto is not None else io.to_proto(model))[0]


def _too_large(model: ir.Model) -> bool:
    """The checker needs the whole model in one protobuf; ORT still checks such a model when it loads it."""
    return io.initializer_bytes(model) > io.EXTERNAL_DATA_THRESHOLD


def _checked(proto: onnx.ModelProto) -> tuple[list[str], onnx.ModelProto | None]:
    """The checker's and strict inference's problems, and ``proto`` with its shapes inferred when strict inference
    held (what the channel rules read), else None."""
    problems = []
    try:
        onnx.checker.check_model(proto, full_check=False)
    except onnx.checker.ValidationError as exc:
        problems.append(f"checker: {first_line(exc)}")
    if _only_standard_domains(proto):
        try:
            data_prop = not walk.names_repeat(walk.proto_graphs(proto.graph))  # see walk.names_repeat
            return problems, onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=data_prop)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
            problems.append(f"shape inference: {first_line(exc)}")
    return problems, None


def _only_standard_domains(proto: onnx.ModelProto) -> bool:
    """Strict inference refuses ops it has no schema for (e.g. ORT contrib ops); skip it there."""
    return all(node.domain in ("", "ai.onnx") for node in proto.graph.node)
