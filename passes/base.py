"""The base class of every onnxcompress pass, the registry it fills, and the context of one run.

A pass is an ``onnx_ir`` in-place pass with a stable CLI ``name``, typed keyword options stored
as attributes of the same names, and an ``exact`` flag (exact passes must keep the model's outputs;
the pipeline checks them). Subclassing with a ``name`` registers the pass: there is no other list.
Options are validated by the constructor, so a bad one is refused before anything runs.

A pass object holds its options and nothing else. What one run is given (calibration data,
labelled data) and what it leaves for the report (notes, details) live in a ``PassContext`` made
for that run, which the pass reads as ``self.context`` while it runs; ``apply`` hands the data in
and returns the notes and details with the model, so running the same pass objects again, on other
data or in another thread, cannot see the last run's.

Passes may infer shapes for their own analysis, but the shape annotations they add to intermediate
values are dropped afterwards: ORT runs a model *slower* with them (measured: all-MiniLM-L6-v2 at
batch 1, sequence 128 took 1.13x as long once ``ShapeInferencePass`` had annotated it, and 0.98x of
the input after ``fuse`` once the annotations were dropped).
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import typing
from typing import Any, ClassVar

import onnx_ir as ir

from onnxcompress.errors import UsageError

REGISTRY: dict[str, type[CompressionPass]] = {}


@dataclasses.dataclass
class PassContext:
    """One run of a pass: the data it is handed and the notes and details it leaves for the report.

    ``calibration`` is a calibration reader (``onnxcompress.calibration``), ``labelled`` inputs with
    class labels (``onnxcompress.pipeline.LabelledData``); either may be None.
    """

    calibration: Any = None
    labelled: Any = None
    notes: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PassOutcome(ir.passes.PassResult):
    """onnx_ir's result of a pass (``model``, ``modified``) with the run's ``notes`` and ``details``."""

    notes: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


_RUNNING: contextvars.ContextVar[tuple[CompressionPass, PassContext] | None] = contextvars.ContextVar("running_pass", default=None)


class CompressionPass(ir.passes.InPlacePass):
    """An in-place graph pass with a CLI name, typed options validated when built, and a context per run."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise RuntimeError(f"two passes are registered as {name!r}")
        REGISTRY[name] = cls

    def __call__(self, model_or_result: ir.Model | ir.passes.PassResult, /) -> PassOutcome:
        """Run without calibration or labelled data (onnx_ir's interface); ``apply`` hands them in."""
        return self.apply(model_or_result)

    def apply(
        self, model_or_result: ir.Model | ir.passes.PassResult, /, *, calibration: Any = None, labelled: Any = None,
    ) -> PassOutcome:
        """Run the pass on the model (in place) with this run's calibration and labelled data.

        This is the one way to give a pass data: ``Smooth().apply(model, calibration=reader)``.
        A pass that cannot run without calibration data raises a ``UsageError`` before it starts.
        """
        self.check_calibration(calibration)
        model = model_or_result.model if isinstance(model_or_result, ir.passes.PassResult) else model_or_result
        annotated = [v for v in _intermediate_values(model.graph) if v.shape is not None]
        context = PassContext(calibration, labelled)
        token = _RUNNING.set((self, context))
        try:
            result = super().__call__(model)
        finally:
            _RUNNING.reset(token)
        _drop_added_shapes(result.model.graph, annotated)
        return PassOutcome(result.model, result.modified, context.notes, context.details)

    @property
    def context(self) -> PassContext:
        """The context of the run in progress (only while this pass runs)."""
        running = _RUNNING.get()
        if running is None or running[0] is not self:
            raise RuntimeError(f"pass {self.name!r} has a context only while it runs (see CompressionPass.apply)")
        return running[1]

    def note(self, message: str) -> None:
        """Record a line for the report (what was removed, fused, quantized or skipped, and why)."""
        self.context.notes.append(message)

    def calibration_need(self) -> str | None:
        """Why this configuration cannot run without calibration data, or None when it can."""
        return None

    def check_calibration(self, calibration: Any) -> None:
        """Refuse to start without calibration data this configuration needs (a one-line ``UsageError``)."""
        need = self.calibration_need()
        if calibration is None and need is not None:
            raise UsageError(f"{self.name} needs calibration data (--calibration): {need}")

    def require(self, holds: bool, option: str, rule: str) -> None:
        """Refuse option ``option`` unless ``holds``: ``<pass>: <option> must be <rule>, got <value>``."""
        if not holds:
            raise UsageError(f"{self.name}: {option} must be {rule}, got {getattr(self, option)!r}")

    def check_choices(self) -> None:
        """Refuse any option typed as a ``Literal`` choice whose value is not one of its choices."""
        hints = typing.get_type_hints(type(self).__init__)
        for option in self.option_parameters():
            allowed = literal_choices(hints.get(option))
            if allowed is not None:
                self.require(getattr(self, option) in allowed, option, "one of " + ", ".join(map(str, allowed)))

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


def literal_choices(annotation: Any) -> tuple | None:
    """The values a ``Literal[...]`` annotation allows (None too for ``Literal[...] | None``), or None if it is no choice."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    args = typing.get_args(annotation)
    literals = [a for a in args if typing.get_origin(a) is typing.Literal]
    if not literals or len(literals) + (type(None) in args) != len(args):
        return None
    return tuple(v for a in literals for v in typing.get_args(a)) + ((None,) if type(None) in args else ())


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
