"""The base class of every onnxcompress pass, the registry it fills, and the context of one run.

A pass is an ``onnx_ir`` in-place pass with a stable CLI ``name``, typed keyword options stored
as attributes of the same names, and an ``exact`` flag (exact passes must keep the model's outputs;
the pipeline checks them). Subclassing with a ``name`` registers the pass: there is no other list.
Each option is declared once, in the constructor's signature, as ``Annotated[<type>, "<one line of
help>"] = <default>`` (a ``Literal[...]`` type lists the allowed values); ``option_specs`` reads that
contract for the CLI, TOML recipes and ``onnxcompress passes NAME``, and a registered pass with an
option lacking help is refused when its class is defined. Options are validated by the constructor,
so a bad one is refused before anything runs.

A pass object holds its options and nothing else. What one run is given (calibration data,
labelled data) and what it leaves for the report (notes, details) live in a ``PassContext`` made
for that run, which the pass reads as ``self.context`` while it runs; ``apply`` hands the data in
and returns the notes and details with the model, so running the same pass objects again, on other
data or in another thread, cannot see the last run's.

Passes may infer shapes for their own analysis, but the shape and type annotations they add to
intermediate values are dropped afterwards: ORT runs a model *slower* with them (measured: all-MiniLM-L6-v2 at
batch 1, sequence 128 took 1.13x as long once ``ShapeInferencePass`` had annotated it).
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar

import onnx_ir as ir

from onnxcompress import walk
from onnxcompress.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import onnx

REGISTRY: dict[str, type[CompressionPass]] = {}


@dataclasses.dataclass
class PassContext:
    """One run of a pass: the data it is handed and the notes and details it leaves for the report.

    ``calibration`` is a calibration reader (``onnxcompress.calibration``), ``labelled`` inputs with
    class labels (``onnxcompress.pipeline.LabelledData``); either may be None. ``teacher`` is the model
    the chain started from (what ``recover`` distils from; the pipeline hands it in when a pass of the chain
    ``recovers``, None otherwise), and ``recovery_follows`` says a later step
    of the chain recovers what this one loses (so a lossy pass leaves its budget to that step).
    ``serialized`` is the model as the run received it, already serialized (``io.to_proto``; the pipeline's
    snapshot of the step before), or None: what a pass that serializes the model before changing it (for
    whole-model shape inference) may read instead, and only until it changes the model. ``inputs`` are the inputs
    the run checks the model on (the pipeline's: synthetic at its ``--input-shape`` sizes, or ``--inputs``), what a
    pass judges its fidelity on when no calibration data is given; None: synthetic inputs at default sizes.
    """

    calibration: Any = None
    labelled: Any = None
    teacher: ir.Model | None = None
    recovery_follows: bool = False
    serialized: onnx.ModelProto | None = None
    inputs: Mapping[str, np.ndarray] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PassOutcome(ir.passes.PassResult):
    """onnx_ir's result of a pass (``model``, ``modified``) with the run's ``notes`` and ``details``."""

    notes: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One option of a pass as its constructor declares it: ``name: Annotated[annotation, help] = default``.

    ``annotation`` is the option's type without the help (what ``spec.coerce`` reads), ``default`` is
    ``inspect.Parameter.empty`` for a required option.
    """

    name: str
    annotation: Any
    default: Any
    help: str

    @property
    def choices(self) -> tuple | None:
        """The values the option allows when its type is a ``Literal`` choice, else None."""
        return literal_choices(self.annotation)

    def describe(self) -> str:
        """``name=default (type)``, as ``onnxcompress passes`` lists it on one line."""
        default = "" if self.default is inspect.Parameter.empty else f"={self.default!r}"
        return f"{self.name}{default} ({type_text(self.annotation)})"


_RUNNING: contextvars.ContextVar[tuple[CompressionPass, PassContext] | None] = contextvars.ContextVar("running_pass", default=None)


class CompressionPass(ir.passes.InPlacePass):
    """An in-place graph pass with a CLI name, typed options validated when built, and a context per run."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    prepares: ClassVar[tuple[str, ...]] = ()  # the passes whose result this one exists to improve (none: it stands alone)
    recovers: ClassVar[bool] = False  # trains the model back towards the chain's input (``recover``)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise RuntimeError(f"two passes are registered as {name!r}")
        unexplained = [o.name for o in cls.option_specs().values() if not o.help.strip() or "\n" in o.help]
        if unexplained:
            raise RuntimeError(f"pass {name!r} ({cls.__module__}.{cls.__name__}): no one-line help for option {', '.join(unexplained)}; "
                               'declare each as Annotated[<type>, "<one line of help>"] = <default>')
        REGISTRY[name] = cls

    def __call__(self, model_or_result: ir.Model | ir.passes.PassResult, /) -> PassOutcome:
        """Run without calibration or labelled data (onnx_ir's interface); ``apply`` hands them in."""
        return self.apply(model_or_result)

    def apply(
        self, model_or_result: ir.Model | ir.passes.PassResult, /, *, calibration: Any = None, labelled: Any = None,
        teacher: ir.Model | None = None, recovery_follows: bool = False, serialized: onnx.ModelProto | None = None,
        inputs: Mapping[str, np.ndarray] | None = None,
    ) -> PassOutcome:
        """Run the pass on the model (in place) with this run's calibration and labelled data, and the chain's
        ``teacher``, ``recovery_follows``, the model ``serialized`` and the run's ``inputs`` (see ``PassContext``; the
        ``Pipeline`` fills them in).

        This is the one way to give a pass data: ``Smooth().apply(model, calibration=reader)``.
        A pass that cannot run without calibration data raises a ``UsageError`` before it starts.
        """
        self.check_calibration(calibration)
        model = model_or_result.model if isinstance(model_or_result, ir.passes.PassResult) else model_or_result
        annotated = [v for v in _intermediate_values(model.graph) if v.shape is not None or v.type is not None]
        context = PassContext(calibration, labelled, teacher, recovery_follows, serialized, inputs)
        token = _RUNNING.set((self, context))
        try:
            result = super().__call__(model)
        finally:
            _RUNNING.reset(token)
        _drop_added_annotations(result.model.graph, annotated)
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
        for option in self.option_specs().values():
            if option.choices is not None:
                self.require(getattr(self, option.name) in option.choices, option.name, "one of " + ", ".join(map(str, option.choices)))

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring, as plain text (reST's double backquotes dropped)."""
        return (inspect.getdoc(cls) or "").splitlines()[0].replace("``", "")

    @classmethod
    def option_parameters(cls) -> dict[str, inspect.Parameter]:
        """The constructor's keyword options, by name."""
        params = inspect.signature(cls.__init__).parameters
        return {n: p for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    @classmethod
    def option_specs(cls) -> dict[str, OptionSpec]:
        """The constructor's options with their type, default and help, by name (an option without a type hint is a ``str``)."""
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
        return {name: _option_spec(param, hints.get(name, str)) for name, param in cls.option_parameters().items()}

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


def type_text(annotation: Any, *, values: bool = True) -> str:
    """``float``, ``list[str]``, a union's parts (``uint8|int8|none``) and a choice's values (``local|global``), or
    with ``values=False`` the type of a choice's values (``str``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        args = typing.get_args(annotation)
        return "|".join(map(str, args)) if values else "|".join(dict.fromkeys(type(a).__name__ for a in args))
    if is_union(annotation):
        return "|".join("none" if a is type(None) else type_text(a, values=values) for a in typing.get_args(annotation))
    if origin is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def is_union(annotation: Any) -> bool:
    """True for ``A | B`` and ``typing.Union[A, B]`` (``Optional`` included)."""
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _option_spec(param: inspect.Parameter, hint: Any) -> OptionSpec:
    """The option ``param`` with its type hint split into type and help (the first string of an ``Annotated``)."""
    if typing.get_origin(hint) is not typing.Annotated:
        return OptionSpec(param.name, hint, param.default, "")
    help_text = next((extra for extra in hint.__metadata__ if isinstance(extra, str)), "")
    return OptionSpec(param.name, hint.__origin__, param.default, help_text)


def _intermediate_values(graph: ir.Graph) -> list[ir.Value]:
    """Node outputs, in every subgraph too, that are not outputs of their graph."""
    return [v for node in walk.nodes(graph) for v in node.outputs if not v.is_graph_output()]


def _drop_added_annotations(graph: ir.Graph, annotated_before: list[ir.Value]) -> None:
    """Clear the shape and type of every intermediate value that had neither before the pass: a type alone is a
    ``value_info`` entry too, which would make an unchanged model serialize differently (and be checked and run again)."""
    keep = {id(v) for v in annotated_before}
    for value in _intermediate_values(graph):
        if id(value) not in keep:
            value.shape = None
            value.type = None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return type(value).__name__
