"""Defaults and option vocabularies that the library and the CLI's option declarations share.

This module imports only the standard library, so declaring the CLI's options (and so ``onnxcompress --help``) does not
load ONNX Runtime; ``runtime``, ``verify`` and ``pipeline`` import them from here (their names there still work).
"""

from __future__ import annotations

import os
from typing import Literal

DEFAULT_THREADS = 2  # ORT intra-op threads (``runtime``)
MAX_THREADS = min(256, 4 * (os.cpu_count() or 1))  # beyond a few threads per core ORT only thrashes
DEFAULT_RTOL = 1e-3  # output tolerances of ``verify``
DEFAULT_ATOL = 1e-4
Metric = Literal["top1"]  # how labelled data is scored (``pipeline.LabelledData``)
METRIC_HELP = ("How --labels are scored: top1 (argmax of the first output; one value per sample is a label as it is, "
               "or a binary classifier's score: class 1 above 0, above 0.5 after a Sigmoid).")
Prefer = Literal["latency", "size", "quality"]  # which candidate meeting its goal ``search`` calls best
LABELS_KEY = "labels"  # the member of a labelled-data .npz holding the class labels; the others are inputs
MEMORY_BUDGET_ENV = "ONNXCOMPRESS_MEMORY_BUDGET"  # the array budget the user chose, e.g. "8GB" (``io.array_budget``)
