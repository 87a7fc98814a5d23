"""The base class of every onnxcompress pass, and the registry it fills.

A pass is an ``onnx_ir`` in-place pass with a stable CLI ``name``, typed keyword options stored
as attributes of the same names, and an ``exact`` flag (exact passes must keep the model's outputs;
the pipeline checks them). Subclassing with a ``name`` registers the pass: there is no other list.
Passes never do I/O and never print; they leave human-readable ``notes`` for the report.

Passes may infer shapes for their own analysis, but the shape annotations they add to intermediate
values are dropped afterwards: ORT runs a model *slower* with them (measured: all-MiniLM-L6-v2 at
batch 1, sequence 128 took 1.13x as long once ``ShapeInferencePass`` had annotated it, and 0.98x of
the input after ``fuse`` once the annotations were dropped).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import onnx_ir as ir

REGISTRY: dict[str, type[CompressionPass]] = {}


class CompressionPass(ir.passes.InPlacePass):
    """An in-place graph pass with a CLI name, typed options and notes for the report."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    uses_calibration: ClassVar[bool] = False  # takes the pipeline's calibration data when given
    requires_calibration: ClassVar[bool] = False  # cannot run without it (``recommend`` asks for --calibration)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise RuntimeError(f"two passes are registered as {name!r}")
        REGISTRY[name] = cls

    def __call__(self, model_or_result: ir.Model | ir.passes.PassResult, /) -> ir.passes.PassResult:
        self.notes: list[str] = []
        self.details: dict[str, Any] = {}
        model = model_or_result.model if isinstance(model_or_result, ir.passes.PassResult) else model_or_result
        annotated = [v for v in _intermediate_values(model.graph) if v.shape is not None]
        result = super().__call__(model_or_result)
        _drop_added_shapes(result.model.graph, annotated)
        return result

    def note(self, message: str) -> None:
        """Record a line for the report (what was removed, fused, quantized or skipped, and why)."""
        self.notes.append(message)

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        return (inspect.getdoc(cls) or "").splitlines()[0]

    @classmethod
    def option_parameters(cls) -> dict[str, inspect.Parameter]:
        """The constructor's keyword options, by name."""
        params = inspect.signature(cls.__init__).parameters
        return {n: p for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    def options(self) -> dict[str, Any]:
        """The options this instance was built with (for the report)."""
        return {n: _plain(getattr(self, n, None)) for n in self.option_parameters()}


def _intermediate_values(graph: ir.Graph) -> list[ir.Value]:
    """Node outputs, in every subgraph too, that are not outputs of their graph."""
    return [v for node in graph.all_nodes() for v in node.outputs if not v.is_graph_output()]


def _drop_added_shapes(graph: ir.Graph, annotated_before: list[ir.Value]) -> None:
    """Clear the shape of every intermediate value that had none before the pass."""
    keep = {id(v) for v in annotated_before}
    for value in _intermediate_values(graph):
        if id(value) not in keep:
            value.shape = None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return type(value).__name__
