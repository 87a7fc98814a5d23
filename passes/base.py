"""The base class of every onnxcompress pass, and the registry it fills.

A pass is an ``onnx_ir`` in-place pass with a stable CLI ``name``, typed keyword options stored
as attributes of the same names, and an ``exact`` flag (exact passes must keep the model's outputs;
the pipeline checks them). Subclassing with a ``name`` registers the pass: there is no other list.
Passes never do I/O and never print; they leave human-readable ``notes`` for the report.
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
    uses_calibration: ClassVar[bool] = False

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
        return super().__call__(model_or_result)

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


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return type(value).__name__
