"""PyTorch knowledge distillation feeding the ONNX pass chain (needs the ``torch`` extra).

``distill(teacher, student, data, strategy=...)`` trains a student; ``students`` builds students
from the teacher's own weights; ``export.to_pipeline`` hands the student to an ``onnxcompress.Pipeline``.
"""

from onnxcompress.distill.engine import DistillResult, EpochMetrics, distill, multi_stage
from onnxcompress.distill.strategies import STRATEGIES
from onnxcompress.distill.students import drop_layers, narrow_copy

__all__ = ["STRATEGIES", "DistillResult", "EpochMetrics", "distill", "drop_layers", "multi_stage", "narrow_copy"]
