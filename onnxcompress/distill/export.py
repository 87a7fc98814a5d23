"""Teacher/student → ONNX, and the one-call hand-off of a trained student into a ``Pipeline``."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from onnxcompress import io
from onnxcompress.models.export import export_onnx
from onnxcompress.passes import CompressionPass
from onnxcompress.pipeline import Pipeline, PipelineResult
from onnxcompress.spec import parse_pass

MIN_OPSET = 17


def export(
    module: torch.nn.Module,
    path: str | Path,
    example_inputs: tuple,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = MIN_OPSET,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Export ``module`` (eval mode) with a dynamic batch, the given names, and opset ≥ 17.

    ``dynamic_axes`` names further dynamic axes (e.g. ``{"input_ids": {1: "seq"}}``).
    """
    return export_onnx(
        module.eval(), Path(path), example_inputs,
        input_names=list(input_names), output_names=list(output_names), dynamic_batch=True,
        opset=max(opset, MIN_OPSET), dynamic_axes=dynamic_axes,
    )


def to_pipeline(
    student: torch.nn.Module,
    passes: Sequence[str | CompressionPass],
    *,
    example_inputs: tuple,
    input_names: Sequence[str],
    output_names: Sequence[str],
    path: str | Path | None = None,
    calibration: object | None = None,
    opset: int = MIN_OPSET,
    **pipeline_options: Any,
) -> PipelineResult:
    """Export ``student`` (to ``path``, or a temporary file) and run ``passes`` (specs or objects) on it.

    ``pipeline_options`` go to :class:`onnxcompress.Pipeline` (``measurement``, ``max_drop``...).
    """
    built = [parse_pass(p) if isinstance(p, str) else p for p in passes]
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(path) if path is not None else Path(tmp) / "student.onnx"
        export(student, target, example_inputs, input_names=input_names, output_names=output_names, opset=opset)
        model = io.load(target)
        return Pipeline(built, **pipeline_options).run(model, calibration=calibration)
