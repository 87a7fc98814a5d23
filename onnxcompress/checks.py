"""Structural checks, the same after every pass of a pipeline and in ``verify``: the onnx checker, strict
shape inference, and the per-op channel rules they let through (ORT loading the model comes on top)."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from onnxcompress import io, shape_rules
from onnxcompress.errors import first_line


CHECKER = "onnx checker and strict shape inference"
CHANNEL_RULES = "channel consistency rules"


def structure_problems(model: ir.Model) -> dict[str, list[str]]:
    """What each structural check rejects, by check (``CHECKER``, ``CHANNEL_RULES``); empty lists when valid."""
    return {CHECKER: graph_problems(model), CHANNEL_RULES: shape_rules.shape_problems(model)}


def graph_problems(model: ir.Model) -> list[str]:
    """What the onnx checker (full check) and strict shape inference reject; empty when valid."""
    if io.initializer_bytes(model) > io.EXTERNAL_DATA_THRESHOLD:
        return []  # the checker needs the whole model in one protobuf; ORT still checks it later
    proto = io.to_proto(model)
    problems = []
    try:
        onnx.checker.check_model(proto, full_check=False)
    except onnx.checker.ValidationError as exc:
        problems.append(f"checker: {first_line(exc)}")
    if _only_standard_domains(proto):
        try:
            onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
            problems.append(f"shape inference: {first_line(exc)}")
    return problems


def _only_standard_domains(proto: onnx.ModelProto) -> bool:
    """Strict inference refuses ops it has no schema for (e.g. ORT contrib ops); skip it there."""
    return all(node.domain in ("", "ai.onnx") for node in proto.graph.node)

