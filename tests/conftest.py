"""Session-wide fixtures: expensive reference models are built once per test run; every test fails
if the CLI reported a bug in onnxcompress (exit 70) and the test is not marked ``internal_error``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

LIGHT_MODELS_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.fixture(autouse=True)
def no_progress_lines(monkeypatch):
    """Progress lines off in the CLI (as ``ONNXCOMPRESS_LOG=warning`` does for a script), so a test reads the
    results and errors alone; tests of the progress lines turn them back on. The ``onnxcompress`` logger
    propagates again after each test (the CLI stops it; ``caplog`` reads records at the root)."""
    monkeypatch.setenv("ONNXCOMPRESS_LOG", "warning")
    monkeypatch.setattr(logging.getLogger("onnxcompress"), "propagate", True)


@pytest.fixture(autouse=True)
def no_bug_reported(request, monkeypatch):
    """Fail a test in which ``onnxcompress.cli.main`` took its defect path (exit 70), unless the test
    is marked ``internal_error`` (and then it must have taken it)."""
    from onnxcompress import cli

    reported: list[BaseException] = []
    report_bug = cli.report_bug

    def recording(exc: Exception) -> int:
        reported.append(exc)
        return report_bug(exc)

    monkeypatch.setattr(cli, "report_bug", recording)
    yield
    expected = request.node.get_closest_marker("internal_error") is not None
    if reported and not expected:
        pytest.fail(f"the CLI reported a bug in onnxcompress: {type(reported[0]).__name__}: {reported[0]}", pytrace=False)
    if expected and not reported:
        pytest.fail("marked internal_error, but the CLI reported no bug", pytrace=False)


@pytest.fixture(scope="session")
def minilm_onnx(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 exported to ONNX once per session (opset 17, dynamic batch and sequence)."""
    from onnxcompress.models import minilm

    return minilm.export_minilm(tmp_path_factory.mktemp("minilm") / "minilm.onnx")


@pytest.fixture(scope="session")
def minilm_feeds() -> dict[str, np.ndarray]:
    """Eight real corpus sentences tokenized for MiniLM, padded/truncated to 32 tokens."""
    from onnxcompress.models import corpus, minilm

    return minilm.tokenize(corpus.sentences(8, seed=0), pad_to=32)


@pytest.fixture(scope="session")
def light_models() -> list[Path]:
    """The small CNNs that ship with onnx's backend tests (AlexNet, ResNet-50, ... with tiny weights)."""
    return sorted(LIGHT_MODELS_DIR.glob("*.onnx"))


@pytest.fixture(scope="session")
def assert_exact_rewrite():
    """A checker for graph rewrites: ``check(before, after, feeds=None)`` asserts the rewritten model is
    valid (``checks.graph_problems``) and reproduces ``before``'s outputs under ORT with its optimizer
    disabled (so ORT cannot hide a malformed graph) and at ORT_ENABLE_ALL."""
    from onnxcompress import checks, fidelity, runtime

    def check(before, after, feeds=None) -> None:
        assert checks.graph_problems(after) == []
        feeds = feeds if feeds is not None else runtime.synthetic_inputs(before)
        expected = runtime.run(before, feeds, optimization="disable")
        for level in ("disable", "all"):
            result = fidelity.compare(expected, runtime.run(after, feeds, optimization=level))
            assert result.exact, f"outputs changed at ORT optimization={level}: max abs err {result.max_abs_err:.3g}"

    return check


@pytest.fixture(scope="session")
def rewrite_text():
    """``rewrite(pass_, text) -> (before, after, outcome)``: a model parsed from ONNX text and a copy
    ``pass_`` rewrote in place, so a test can compare the two and read the run's notes and details."""
    import onnx_ir as ir

    from onnxcompress import io

    def rewrite(pass_, text: str):
        before = ir.from_onnx_text(text)
        after = io.clone(before)
        return before, after, pass_(after)

    return rewrite
