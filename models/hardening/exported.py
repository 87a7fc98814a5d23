"""Corpus entries for a torch module exported with each of PyTorch's two ONNX exporters.

The TorchScript exporter (``dynamo=False``, opset 17) and the dynamo exporter (``dynamo=True``,
opset 18) write different graphs for the same module (attention as MatMul chains or fused ops,
GELU as Erf or a Gelu node, shapes as folded constants or Shape arithmetic), and the passes meet
both in the wild, so every exported architecture is in the corpus twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from onnxcompress.models.hardening.entry import Entry, Feeds, Fidelity

EXPORTERS = {"legacy": False, "dynamo": True}
EXPORT_PACKAGES = ("torch", "onnxscript")


def entries(
    name: str,
    source: str,
    module: Callable[[], object],
    *,
    inputs: Callable[[str, int], Feeds],
    output_names: Sequence[str],
    fidelity: Fidelity,
    requires: Sequence[str] = (),
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    samples: Mapping[str, int] | None = None,
    revision: int = 1,
    half: bool = False,
    trace: Callable[[str, int], Feeds] | None = None,
) -> list[Entry]:
    """``name-legacy`` and ``name-dynamo``: ``module()`` exported with dynamic batch (and ``dynamic_axes``), traced on
    two held-out samples; ``half``: after ``module.half()``, as models made for GPUs are shipped (its float inputs are
    then float16 too); ``trace``: the inputs traced on, when not ``inputs`` (a cached decoder's first steps have
    empty caches, whose length the legacy exporter would fix at 0)."""
    if half:
        module, inputs = functools.partial(_half_module, module), functools.partial(_half_inputs, inputs)
        source = f"{source}; .half()"
    return [
        Entry(
            name=f"{name}-{exporter}",
            source=f"{source}; torch.onnx.export(dynamo={dynamo})",
            requires=(*EXPORT_PACKAGES, *requires),
            make=functools.partial(_export, module, trace or inputs, output_names, dynamic_axes, dynamo),
            inputs=inputs,
            fidelity=fidelity,
            revision=revision,
            **({"samples": dict(samples)} if samples else {}),
        )
        for exporter, dynamo in EXPORTERS.items()
    ]


def _half_module(module: Callable[[], object]) -> object:
    return module().half()


def _half_inputs(inputs: Callable[[str, int], Feeds], split: str, count: int) -> Feeds:
    return {name: array.astype("float16") if array.dtype.kind == "f" else array for name, array in inputs(split, count).items()}


def _export(module, inputs, output_names, dynamic_axes, dynamo: bool, path: Path) -> Path:
    import torch

    from onnxcompress.models.export import export_onnx

    example = inputs("held-out", 2)
    return export_onnx(
        module(),
        path,
        tuple(torch.from_numpy(array) for array in example.values()),
        input_names=list(example),
        output_names=output_names,
        dynamo=dynamo,
        dynamic_axes=dynamic_axes,
    )
