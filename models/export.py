"""PyTorch → ONNX export for the reference models, written atomically through ``onnxcompress.io``.

Two exporter spellings are available because the graphs they produce differ in ways the passes
must handle: the TorchScript exporter (default; e.g. ``GlobalAveragePool`` + ``Flatten``) and the
dynamo exporter (``dynamo=True``; e.g. ``ReduceMean`` + ``Reshape``). The dynamo exporter has no
translations below opset 18 and its down-conversion fails on such graphs, so it exports at
``max(opset, 18)``. The TorchScript exporter folds eval-mode BatchNorm into the convolutions;
``keep_batchnorm=True`` keeps the ``Conv → BatchNormalization`` pairs (what fusion passes meet in
models exported by other tools).
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from onnxcompress import io

BATCH_DIM = "batch"
DYNAMO_MIN_OPSET = 18


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
    keep_batchnorm: bool = False,
) -> Path:
    """Export ``module`` (in eval mode) to ``path`` and return the path.

    ``dynamic_batch`` makes axis 0 of every input and output a symbolic ``batch`` dimension;
    ``dynamic_axes`` adds further named dynamic axes per input/output name (e.g. a sequence axis).
    """
    axes = _dynamic_axes(input_names, output_names, dynamic_batch, dynamic_axes)
    names = {"input_names": list(input_names), "output_names": list(output_names), "verbose": False}
    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="onnxcompress-export-") as tmp:
        staged = Path(tmp) / "model.onnx"
        with torch.no_grad():
            if dynamo:
                _export_dynamo(module, staged, example_inputs, names, axes, opset)
            else:
                _export_torchscript(module, staged, example_inputs, names, axes, opset, keep_batchnorm)
        return io.save(io.load(staged), path)


def _export_torchscript(module, staged: Path, example_inputs, names, axes, opset: int, keep_batchnorm: bool) -> None:
    """TorchScript exporter; PRESERVE mode skips its eval-mode BatchNorm folding."""
    training = torch.onnx.TrainingMode.PRESERVE if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(
        module, example_inputs, str(staged),
        dynamic_axes=axes, opset_version=opset, training=training, dynamo=False, **names,
    )


def _export_dynamo(module, staged: Path, example_inputs, names, axes, opset: int) -> None:
    """Dynamo exporter, at opset 18 or later."""
    program = torch.onnx.export(
        module, example_inputs,
        dynamic_shapes=_dynamo_shapes(module, names["input_names"], axes),
        opset_version=max(opset, DYNAMO_MIN_OPSET), dynamo=True, **names,
    )
    program.save(str(staged))


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


def _dynamo_shapes(module: torch.nn.Module, input_names: Sequence[str], axes: Mapping[str, Mapping[int, str]]) -> tuple:
    """The dynamo exporter's ``dynamic_shapes``: one dict per positional input (those a ``*args`` takes grouped in
    one tuple, as torch.export sees them), one Dim per label; a label that is not a name (``past_sequence_length +
    sequence_length``, a cached decoder's mask) is left for torch.export to derive (``Dim.AUTO``, which names it)."""
    dims: dict[str, torch.export.Dim] = {}

    def dim(label: str):
        return dims.setdefault(label, torch.export.Dim(label)) if label.isidentifier() else torch.export.Dim.AUTO

    specs = [{axis: dim(label) for axis, label in axes.get(name, {}).items()} for name in input_names]
    named = _named_positional(module)
    return tuple(specs) if named is None else (*specs[:named], tuple(specs[named:]))


def _named_positional(module: torch.nn.Module) -> int | None:
    """How many named positional parameters ``module.forward`` has before its ``*args``; None without one."""
    parameters = list(inspect.signature(module.forward).parameters.values())
    varargs = [i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_POSITIONAL]
    return varargs[0] if varargs else None
