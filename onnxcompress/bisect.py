"""Find the first pass of a pipeline that breaks a tolerance or a fidelity gate (``verify.Gates``).

The passes run through the pipeline's own step loop (``Pipeline.steps``: the checks ``run`` makes
after every pass) on a copy of the model, and the model is verified after each one against the
input model's outputs on the same inputs, stopping at the first failure. This runs every pass once
(a binary search over prefixes would re-run early passes log n times) and names exactly the pass
that broke the graph or the numbers, with its verification result or the check it failed. Passes
that need calibration data (quantize-static, smooth) get ``calibration``, as ``run`` hands it to them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxcompress import generation, io, runtime, verify
from onnxcompress.errors import OnnxCompressError, first_line
from onnxcompress.passes import CompressionPass
from onnxcompress.pipeline import Measurement, Pipeline


@dataclasses.dataclass
class BisectStep:
    """One pass applied: its verification, or the error the pass raised."""

    pass_name: str
    result: verify.VerifyResult | None
    error: str = ""

    @property
    def passed(self) -> bool:
        """The pass ran and the model still verifies."""
        return self.result is not None and self.result.passed


@dataclasses.dataclass
class BisectResult:
    """The steps up to and including the first failing one."""

    steps: list[BisectStep]

    @property
    def first_failure(self) -> BisectStep | None:
        """The first pass that broke the model, or None when all passed."""
        return next((s for s in self.steps if not s.passed), None)


def bisect_passes(
    model: ir.Model,
    passes: Sequence[CompressionPass],
    inputs: Mapping[str, np.ndarray] | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gates: verify.Gates | None = None,
    calibration: object | None = None,
    threads: int = runtime.DEFAULT_THREADS,
) -> BisectResult:
    """Apply ``passes`` in order to a copy of ``model``; stop at the first one that fails to verify.

    ``rtol``/``atol``/``gates`` judge each step as in ``verify.verify_models``; ``calibration`` (a reader,
    see ``onnxcompress.calibration``) goes to the passes as in ``Pipeline.steps``, which refuses a pass
    that needs it when it is missing (``UsageError``) before any pass runs.
    """
    feeds = dict(inputs) if inputs is not None else runtime.synthetic_inputs(model)
    verify.check_feed_names(model, feeds)
    expected = runtime.run(model, feeds, threads=threads, optimization="disable")
    beside = generation.expected_beside(model, feeds, threads)
    pipeline = Pipeline(passes, measurement=Measurement(benchmark=False, threads=threads, feeds=feeds))
    loop = pipeline.steps(io.clone(model), calibration=calibration)
    next(loop)  # the input's own record
    steps: list[BisectStep] = []
    for pass_ in passes:
        try:
            _, working = next(loop)
        except Exception as exc:  # a pass that crashes or fails a check breaks the pipeline as surely as a wrong rewrite
            message = str(exc) if isinstance(exc, OnnxCompressError) else f"{type(exc).__name__}: {exc}"
            steps.append(BisectStep(pass_.name, None, first_line(message)))
            break
        result = verify.verify_against(working, feeds, expected, rtol=rtol, atol=atol, gates=gates, threads=threads, beside=beside)
        steps.append(BisectStep(pass_.name, result))
        if not result.passed:
            break
    return BisectResult(steps)
