"""One recipe run on a model that travels as bytes: the task an engine runs for ``compare`` and ``search``.

What every trial of one model shares (``Inputs``: the model's serialized bytes, the fixed inputs outputs are
judged on, the calibration batches, labelled data, threads) is made once by the caller and shipped once to
each worker; a trial gets it and a recipe's passes, and returns plain data (``Trial``: the pipeline's step
records and the final model's bytes), so the same function gives the same bytes in this process or on
another machine. Nothing here times a model: latency is measured afterwards, side by side, by the caller.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.calibration import FeedsReader, as_reader
from onnxcompress.errors import OnnxCompressError, UsageError, first_line
from onnxcompress.passes import CompressionPass
from onnxcompress.pipeline import LabelledData, Measurement, Pipeline
from onnxcompress.records import StepRecord


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What all trials on one model share: the model (serialized), the fixed inputs its outputs are compared
    on, the calibration batches read once (None: no data), the labelled data and the ORT threads and batch.
    ``task_threads``: the ORT threads a trial runs with when not ``threads`` (the timing's): one on Ray, whose
    tasks each hold one CPU, so that two trials on two cores do not run four spinning threads."""

    model: bytes
    feeds: dict[str, np.ndarray]
    calibration: FeedsReader | None
    labelled: LabelledData | None
    threads: int
    batch: int
    task_threads: int | None = None

    @classmethod
    def of(cls, model: ir.Model, measurement: Measurement, calibration: object | None = None, task_threads: int | None = None) -> Inputs:
        """The inputs for trials on ``model``: those ``measurement`` checks on (``Measurement.inputs_for``), and
        ``calibration`` in any form ``calibration.as_reader`` takes, read into memory once so that it can travel."""
        m = measurement
        batches = FeedsReader(as_reader(calibration, model).batches()) if calibration is not None else None
        return cls(to_bytes(model), m.inputs_for(model, batches), batches, m.labelled, m.threads, m.batch, task_threads)

    def measurement(self) -> Measurement:
        """The pipeline's checks on these inputs, without its own benchmark."""
        return Measurement(benchmark=False, threads=self.task_threads or self.threads, batch=self.batch, feeds=self.feeds,
                           labelled=self.labelled)


@dataclasses.dataclass
class Trial:
    """A recipe's run: every step's record (the input's first) and the final model's bytes, or the one-line
    failure (``failure``, an error the user can act on) that stopped it."""

    name: str
    steps: list[StepRecord]
    model: bytes | None
    seconds: float
    failure: OnnxCompressError | MemoryError | None = None

    @property
    def reason(self) -> str | None:
        """The failure as one line, None when the recipe ran."""
        return None if self.failure is None else first_line(self.failure)


def run(inputs: Inputs, name: str, passes: Sequence[CompressionPass]) -> Trial:
    """Run ``passes`` on a copy of ``inputs.model`` through the pipeline's checks. An error the user can act on
    (bad options, a broken budget, not enough memory) is the trial's ``failure``; any other is a defect and raises."""
    start = time.perf_counter()
    try:
        result = Pipeline(list(passes), measurement=inputs.measurement()).run(from_bytes(inputs.model), calibration=inputs.calibration)
    except (OnnxCompressError, MemoryError) as exc:
        return Trial(name, [], None, time.perf_counter() - start, exc)
    return Trial(name, result.report.steps, to_bytes(result.model), time.perf_counter() - start)


def to_bytes(model: ir.Model) -> bytes:
    """``model`` serialized with every tensor inline, the form models travel in; a one-line ``UsageError`` above 2 GB."""
    if io.initializer_bytes(model) > io.EXTERNAL_DATA_THRESHOLD:
        raise UsageError("the model's tensors exceed the 2 GB a serialized model can hold, and compare and search ship models serialized")
    return io.to_proto(model).SerializeToString()


def from_bytes(data: bytes, like: ir.Model | None = None) -> ir.Model:
    """The model ``to_bytes`` serialized, carrying ``like``'s record of which tensors its file held sparse (so ``io.save``
    stores them sparse again)."""
    model = ir.serde.deserialize_model(onnx.ModelProto.FromString(data))
    if like is not None and io.SPARSE_KEY in like.meta:
        model.meta[io.SPARSE_KEY] = like.meta[io.SPARSE_KEY]
    return model
