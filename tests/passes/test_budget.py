"""The default fidelity budget judges a classifier's or a decoder's class scores by the class they pick as well."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes.budget import default_budget

SCORES = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] {name}) <float[4] scale = {{{scale}}}> {{
  {name} = Mul(x, scale)
}}"""


def scorer(name: str, scale: str) -> ir.Model:
    return ir.from_onnx_text(SCORES.format(name=name, scale=scale))


def close_calls(count: int = 64) -> np.ndarray:
    """Rows whose two best classes are 1 % apart in half of every 8 rows: a 3 % change of one score flips those (and
    half of the held-out samples, every fourth, are such rows)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.5, (count, 4)).astype(np.float32)
    x[:, 0], x[:, 1] = 1.0, np.where(np.arange(count) % 8 < 4, 0.99, 0.6)
    return x


@pytest.mark.parametrize(("name", "holds"), [("logits", False), ("probabilities", False), ("features", True)])
def test_class_scores_that_pick_other_classes_break_the_budget_where_their_error_is_small(name, holds):
    reference, candidate = scorer(name, "1.0, 1.0, 1.0, 1.0"), scorer(name, "0.97, 1.0, 1.0, 1.0")
    budget, _ = default_budget(reference, calibration=ArrayReader({"x": close_calls()}))
    score = budget.score(io.to_proto(candidate))
    assert budget.holds(score) == holds
    values = budget.to_dict(score)
    assert values["slice error"] < 0.5  # within the default bound: judged by the scores alone, it would pass
    if not holds:
        assert values["changed labels"] == 0.5 and f"at '{name} top-1'" in budget.describe(score)
