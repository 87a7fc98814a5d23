"""onnxcompress: graph-level ONNX optimization and compression, verified and measured per pass."""

from onnxcompress.errors import CheckFailed, OnnxCompressError, UsageError
from onnxcompress.io import load, save
from onnxcompress.pipeline import LabelledData, Measurement, Pipeline, PipelineResult
from onnxcompress.spec import load_recipe, parse_pass

__all__ = [
    "CheckFailed",
    "LabelledData",
    "Measurement",
    "OnnxCompressError",
    "Pipeline",
    "PipelineResult",
    "UsageError",
    "load",
    "load_recipe",
    "parse_pass",
    "run",
    "save",
]
__version__ = "0.1.0"


def run(model, passes: list, *, calibration=None, **pipeline_options) -> PipelineResult:
    """Run pass specs (``"fuse"``, ``"prune-channels:ratio=0.5"``) or pass objects on ``model`` (a path or a
    loaded model), with ``calibration`` data (a reader, see ``onnxcompress.calibration``) for the passes that need it."""
    built = [parse_pass(p) if isinstance(p, str) else p for p in passes]
    return Pipeline(built, **pipeline_options).run(load(model) if not hasattr(model, "graph") else model, calibration=calibration)
