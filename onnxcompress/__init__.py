"""onnxcompress: graph-level ONNX optimization and compression, verified and measured per pass.

The package front is lazy (PEP 562): ``import onnxcompress`` loads none of its modules, and each public
name below imports its module on first use, so a script or ``onnxcompress --help`` does not pay for
ONNX Runtime, onnxscript or the passes until it needs them.
"""

from __future__ import annotations

import importlib
import os
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


def run(model, passes: list, *, calibration=None, output=None, copy: bool = True, **pipeline_options) -> PipelineResult:
    """Run pass specs (``"fuse"``, ``"prune-channels:ratio=0.5"``) or pass objects on ``model`` and return the
    final model with the report; ``pipeline_options`` are ``Pipeline``'s (``measurement``, ``max_drop``, ...).

    ``model`` is a path, an ``onnx.ModelProto`` or an ``onnx_ir.Model``, and ``result.model`` is of the same
    kind (an ``onnx_ir.Model`` for a path); ``output``, when given, is a path the result is also written to
    (atomically, never over the input's files). The input is left as it was: an ``onnx_ir.Model`` is copied
    first unless ``copy=False`` asks for it to be changed in place (``Pipeline.run`` works in place).
    ``calibration`` feeds the passes that need it, in any form ``calibration.as_reader`` takes: an ``.npz``
    path (keys = input names, first axis = samples) or image folder, a dict of arrays, an iterable of feed
    dicts, an ONNX Runtime ``CalibrationDataReader`` or a reader.
    """
    import onnx
    import onnx_ir as ir

    from onnxcompress import io
    from onnxcompress.errors import UsageError
    from onnxcompress.pipeline import Pipeline
    from onnxcompress.spec import parse_pass

    if isinstance(model, ir.Model):
        working = io.clone(model) if copy else model
    elif isinstance(model, onnx.ModelProto):
        working = ir.serde.deserialize_model(model)
    elif isinstance(model, (str, os.PathLike)):
        working = io.load(model)
    else:
        raise UsageError(f"model must be a path, an onnx.ModelProto or an onnx_ir.Model; got {type(model).__name__}")
    if output is not None:
        io.check_output_path(output, [working])
    built = [parse_pass(p) if isinstance(p, str) else p for p in passes]
    result = Pipeline(built, **pipeline_options).run(working, calibration=calibration)
    if output is not None:
        io.save(result.model, output, inputs=[working])
    if isinstance(model, onnx.ModelProto):
        result.model = io.to_proto(result.model)
    return result
