"""onnxcompress: graph-level ONNX optimization and compression, verified and measured per pass.

The package front is lazy (PEP 562): ``import onnxcompress`` loads none of its modules, and each public
name below imports its module on first use, so a script or ``onnxcompress --help`` does not pay for
ONNX Runtime, onnxscript or the passes until it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onnxcompress.errors import CheckFailed, OnnxCompressError, UsageError
    from onnxcompress.io import load, save
    from onnxcompress.pipeline import LabelledData, Measurement, Pipeline, PipelineResult
    from onnxcompress.spec import load_recipe, parse_pass

__version__ = "0.1.0"
_HOMES = {  # public name -> the module that defines it
    "CheckFailed": "onnxcompress.errors",
    "OnnxCompressError": "onnxcompress.errors",
    "UsageError": "onnxcompress.errors",
    "load": "onnxcompress.io",
    "save": "onnxcompress.io",
    "LabelledData": "onnxcompress.pipeline",
    "Measurement": "onnxcompress.pipeline",
    "Pipeline": "onnxcompress.pipeline",
    "PipelineResult": "onnxcompress.pipeline",
    "load_recipe": "onnxcompress.spec",
    "parse_pass": "onnxcompress.spec",
}
__all__ = sorted([*_HOMES, "run"])


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and then kept in the package namespace."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names next to what is already loaded (``dir()`` and completion list the lazy ones too)."""
    return sorted({*globals(), *__all__})


def run(model, passes: list, *, calibration=None, **pipeline_options) -> PipelineResult:
    """Run pass specs (``"fuse"``, ``"prune-channels:ratio=0.5"``) or pass objects on ``model`` (a path or a
    loaded model), with ``calibration`` data (a reader, see ``onnxcompress.calibration``) for the passes that need it."""
    from onnxcompress.io import load
    from onnxcompress.pipeline import Pipeline
    from onnxcompress.spec import parse_pass

    built = [parse_pass(p) if isinstance(p, str) else p for p in passes]
    return Pipeline(built, **pipeline_options).run(load(model) if not hasattr(model, "graph") else model, calibration=calibration)
