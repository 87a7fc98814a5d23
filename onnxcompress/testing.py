"""Assertions for pytest: the checks of ``onnxcompress verify``, raising ``AssertionError``.

Messages name the worst output and element index, the two values there, and the tolerance that
would have passed, so a failing CI log says what to look at without re-running anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxcompress import io, runtime, verify

ModelLike = ir.Model | str | os.PathLike


def assert_models_close(
    ref: ModelLike,
    cand: ModelLike,
    *,
    rtol: float = verify.DEFAULT_RTOL,
    atol: float = verify.DEFAULT_ATOL,
    inputs: Mapping[str, np.ndarray] | None = None,
) -> verify.VerifyResult:
    """Assert ``cand`` is structurally valid and its outputs match ``ref``'s on ``inputs``.

    ``inputs`` default to synthetic ones from ``ref``'s signature. Returns the full result.
    """
    result = verify.verify_models(_model(ref), _model(cand), inputs, rtol=rtol, atol=atol)
    _raise_on_failure(result)
    return result


def assert_outputs_close(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    rtol: float = verify.DEFAULT_RTOL,
    atol: float = verify.DEFAULT_ATOL,
) -> None:
    """Assert two sets of outputs (by name) agree within ``atol + rtol * |expected|``."""
    outputs = [verify.compare_output(n, e, actual.get(n), rtol=rtol, atol=atol) for n, e in expected.items()]
    _raise_on_failure(verify.VerifyResult([], outputs, rtol, atol))


def assert_matches_golden(
    model: ModelLike,
    golden: str | os.PathLike,
    *,
    rtol: float = verify.DEFAULT_RTOL,
    atol: float = verify.DEFAULT_ATOL,
) -> verify.VerifyResult:
    """Assert ``model`` reproduces a golden file written by ``verify --save-golden``."""
    inputs, expected = verify.load_golden(golden)
    result = verify.verify_against(_model(model), inputs, expected, rtol=rtol, atol=atol)
    _raise_on_failure(result)
    return result


def assert_valid_graph(model: ModelLike) -> None:
    """Assert the structural checks pass: checker, strict inference, channel rules, ORT session."""
    failed = [c for c in verify.structure_checks(_model(model)) if not c.passed]
    if failed:
        raise AssertionError(f"{failed[0].name}: {failed[0].detail}")


def run_model(model: ModelLike, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of ``model`` under ORT with its optimizer disabled (what the assertions compare)."""
    return runtime.run(_model(model), inputs, optimization="disable")


def _model(model: ModelLike) -> ir.Model:
    return model if isinstance(model, ir.Model) else io.load(model)


def _raise_on_failure(result: verify.VerifyResult) -> None:
    if result.passed:
        return
    failed_checks = [c for c in result.checks if not c.passed]
    if failed_checks:
        raise AssertionError(f"{failed_checks[0].name}: {failed_checks[0].detail}")
    worst = result.worst_output()
    raise AssertionError(f"worst output {worst.name!r}: {worst.detail}")
