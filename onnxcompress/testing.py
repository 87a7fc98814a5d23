"""Assertions for pytest: the checks of ``onnxcompress verify``, raising ``AssertionError``.

Messages name the worst output and element index, the two values there, and the tolerance that
would have passed, or each fidelity gate missed with its value and threshold, so a failing CI log
says what to look at without re-running anything. Every helper sets ``__tracebackhide__`` so a
pytest traceback ends at the caller's line, not inside these helpers.

Each comparing helper takes ``gates`` (``verify.Gates``: min cosine, SNR, top-k agreement): without
it, outputs pass on ``rtol``/``atol`` (defaults ``verify.DEFAULT_RTOL``/``DEFAULT_ATOL``); with it,
on every gate given, and on ``rtol``/``atol`` only when those are given too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxcompress import io, runtime, verify
from onnxcompress.verify import Gates

__all__ = ["Gates", "assert_matches_golden", "assert_models_close", "assert_outputs_close", "assert_valid_graph", "run_model"]

ModelLike = ir.Model | str | os.PathLike


def assert_models_close(
    ref: ModelLike,
    cand: ModelLike,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gates: verify.Gates | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
) -> verify.VerifyResult:
    """Assert ``cand`` is structurally valid and its outputs match ``ref``'s on ``inputs``.

    ``inputs`` default to synthetic ones from ``ref``'s signature. Returns the full result.
    """
    __tracebackhide__ = True
    result = verify.verify_models(_model(ref), _model(cand), inputs, rtol=rtol, atol=atol, gates=gates)
    _raise_on_failure(result)
    return result


def assert_outputs_close(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gates: verify.Gates | None = None,
) -> None:
    """Assert two sets of outputs (by name) agree within ``atol + rtol * |expected|`` or meet ``gates``."""
    __tracebackhide__ = True
    outputs = [verify.compare_output(n, e, actual.get(n), rtol=rtol, atol=atol, gates=gates) for n, e in expected.items()]
    _raise_on_failure(verify.VerifyResult.judged([], outputs, rtol=rtol, atol=atol, gates=gates))


def assert_matches_golden(
    model: ModelLike,
    golden: str | os.PathLike,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gates: verify.Gates | None = None,
) -> verify.VerifyResult:
    """Assert ``model`` reproduces a golden file written by ``verify --save-golden``."""
    __tracebackhide__ = True
    inputs, expected, beside = verify.read_golden(golden)
    result = verify.verify_against(_model(model), inputs, expected, rtol=rtol, atol=atol, gates=gates, beside=beside)
    _raise_on_failure(result)
    return result


def assert_valid_graph(model: ModelLike) -> None:
    """Assert the structural checks pass: checker, strict inference, channel rules, ORT session."""
    __tracebackhide__ = True
    failed = [c for c in verify.structure_checks(_model(model)) if not c.passed]
    if failed:
        raise AssertionError(f"{failed[0].name}: {failed[0].detail}")


def run_model(model: ModelLike, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of ``model`` under ORT with its optimizer disabled (what the assertions compare)."""
    return runtime.run(_model(model), inputs, optimization="disable")


def _model(model: ModelLike) -> ir.Model:
    return model if isinstance(model, ir.Model) else io.load(model)


def _raise_on_failure(result: verify.VerifyResult) -> None:
    """Raise ``AssertionError`` naming the first failed check, else the worst output."""
    __tracebackhide__ = True
    if result.passed:
        return
    failed_checks = [c for c in result.checks if not c.passed]
    if failed_checks:
        raise AssertionError(f"{failed_checks[0].name}: {failed_checks[0].detail}")
    worst = result.worst_output()
    raise AssertionError(f"worst output {worst.name!r}: {worst.detail}")
