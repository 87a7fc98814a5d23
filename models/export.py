"""PyTorch → ONNX export for the reference models, written atomically through ``onnxcompress.io``.

Two exporter spellings are available because the graphs they produce differ in ways the passes
must handle: the TorchScript exporter (default; e.g. ``GlobalAveragePool`` + ``Flatten``) and the
dynamo exporter (``dynamo=True``; e.g. ``ReduceMean`` + ``Reshape``, opset ≥ 18 internally).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from onnxcompress import io

BATCH_DIM = "batch"


def export_onnx(
    module: torch.nn.Module,
    path: str | os.PathLike,
    example_inputs: tuple,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool = True,
    opset: int = 17,
    dynamo: bool = False,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Export ``module`` (in eval mode) to ``path`` and return the path.

    ``dynamic_batch`` makes axis 0 of every input and output a symbolic ``batch`` dimension;
    ``dynamic_axes`` adds further named dynamic axes per input/output name (e.g. a sequence axis).
    """
    axes = _dynamic_axes(input_names, output_names, dynamic_batch, dynamic_axes)
    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="onnxcompress-export-") as tmp:
        staged = Path(tmp) / "model.onnx"
        with torch.no_grad():
            if dynamo:
                _export_dynamo(module, staged, example_inputs, input_names, output_names, axes, opset)
            else:
                _export_torchscript(module, staged, example_inputs, input_names, output_names, axes, opset)
        return io.save(io.load(staged), path)


def _dynamic_axes(
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool,
    extra: Mapping[str, Mapping[int, str]] | None,
) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch:
        axes = {name: {0: BATCH_DIM} for name in [*input_names, *output_names]}
    for name, dims in (extra or {}).items():
        axes.setdefault(name, {}).update(dims)
    return axes


def _export_torchscript(module, path, example_inputs, input_names, output_names, axes, opset) -> None:
    torch.onnx.export(
        module,
        example_inputs,
        str(path),
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_axes=axes,
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )


def _export_dynamo(module, path, example_inputs, input_names, output_names, axes, opset) -> None:
    """Dynamo export; symbolic dims are declared per input, in positional order."""
    dims: dict[str, torch.export.Dim] = {}
    shapes = tuple(
        {axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes.get(name, {}).items()}
        for name in input_names
    )
    program = torch.onnx.export(
        module,
        example_inputs,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=shapes,
        opset_version=opset,
        dynamo=True,
        optimize=True,
    )
    program.save(str(path))
