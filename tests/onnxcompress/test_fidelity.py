"""Output agreement: max abs error relative to scale, cosine, shape and non-finite handling."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import fidelity


def test_identical_outputs_are_exact():
    ref = {"y": np.arange(6, dtype=np.float32).reshape(2, 3)}
    result = fidelity.compare(ref, {"y": ref["y"].copy()})
    assert result.exact and result.max_abs_err == 0.0 and result.cosine == 1.0


def test_error_is_judged_against_the_output_scale():
    ref = {"y": np.array([1000.0, -500.0], np.float32)}
    assert fidelity.compare(ref, {"y": ref["y"] + 0.05}).exact  # 0.05 <= 1e-4 * 1000
    assert not fidelity.compare(ref, {"y": ref["y"] + 0.2}).exact


def test_worst_output_is_named():
    ref = {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)}
    result = fidelity.compare(ref, {"a": ref["a"], "b": ref["b"] * 2})
    assert result.worst().name == "b" and result.max_abs_err == 1.0
    assert result.to_dict() == {"max_abs_err": 1.0, "cosine": 1.0, "exact": False}


def test_missing_or_reshaped_output_is_a_shape_mismatch():
    ref = {"y": np.ones((2, 3), np.float32)}
    for cand in ({}, {"y": np.ones((3, 2), np.float32)}):
        out = fidelity.compare(ref, cand).outputs[0]
        assert not out.shape_matches and out.max_abs_err == float("inf") and not out.exact


def test_non_finite_values_must_match_in_place():
    ref = {"y": np.array([1.0, np.nan, np.inf], np.float32)}
    assert fidelity.compare(ref, {"y": ref["y"].copy()}).exact
    assert fidelity.compare(ref, {"y": np.array([1.0, 0.0, np.inf], np.float32)}).max_abs_err == float("inf")


def test_integer_and_boolean_outputs():
    ints = {"i": np.array([1, 2, 3], np.int64)}
    assert fidelity.compare(ints, {"i": np.array([1, 2, 4], np.int64)}).max_abs_err == 1.0
    flags = {"b": np.array([True, False])}
    assert fidelity.compare(flags, {"b": np.array([True, False])}).exact
    assert fidelity.compare(flags, {"b": np.array([True, True])}).cosine == 0.0


def test_cosine_of_opposite_and_zero_outputs():
    ref = {"y": np.array([1.0, 2.0], np.float32)}
    assert fidelity.compare(ref, {"y": -ref["y"]}).cosine == pytest.approx(-1.0)
    assert fidelity.compare({"y": np.zeros(2)}, {"y": np.zeros(2)}).cosine == 1.0
    assert fidelity.compare(ref, {"y": np.zeros(2, np.float32)}).cosine == 0.0
