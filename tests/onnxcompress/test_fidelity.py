"""Output agreement: max abs error relative to scale, cosine, shape and non-finite handling, the exact-pass
tolerance of coarse floats, and the relative error per slice that sees a collapse inside one output."""

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
    assert result.to_dict() == {
        "max_abs_err": 1.0, "cosine": 1.0, "exact": False,
        "worst_slice": {"output": "b", "error": result.outputs[1].worst_slice.error, "axis": None, "index": None},
        "changed": 0.0,
        "outputs": [{"name": "a", "max_abs_err": 0.0, "cosine": 1.0, "exact": True, "slice_error": 0.0, "changed": None},
                    {"name": "b", "max_abs_err": 1.0, "cosine": 1.0, "exact": False, "slice_error": result.outputs[1].worst_slice.error,
                     "changed": None}],
    }


def test_missing_or_reshaped_output_is_a_shape_mismatch():
    ref = {"y": np.ones((2, 3), np.float32)}
    for cand in ({}, {"y": np.ones((3, 2), np.float32)}):
        out = fidelity.compare(ref, cand).outputs[0]
        assert not out.shape_matches and out.max_abs_err == float("inf") and not out.exact


def test_non_finite_values_must_match_in_place():
    ref = {"y": np.array([1.0, np.nan, np.inf], np.float32)}
    assert fidelity.compare(ref, {"y": ref["y"].copy()}).exact
    assert fidelity.compare(ref, {"y": np.array([1.0, 0.0, np.inf], np.float32)}).max_abs_err == float("inf")


def test_integer_and_boolean_outputs_are_judged_by_the_share_of_values_changed():
    labels = {"label": np.array([3, 3, 3, 3], np.int64)}
    near, far = (fidelity.compare(labels, {"label": np.array([3, 3, 3, wrong], np.int64)}) for wrong in (4, 9))
    assert near.changed == far.changed == 0.25 and near.cosine == 0.75  # 3 read as 4 is as wrong as 3 read as 9
    assert near.slice_error == far.slice_error == 0.0 and near.most_changed() == "'label'" and near.where() == ""
    assert near.max_abs_err == 1.0 and not near.exact
    flags = {"b": np.array([True, False])}
    assert fidelity.compare(flags, {"b": np.array([True, False])}).exact
    assert fidelity.compare(flags, {"b": np.array([True, True])}).changed == 0.5
    padded = fidelity.compare({"t": np.array([[1, 2, 0]])}, {"t": np.array([[1, 2, 7]])}, mask=np.array([[True, True, False]]))
    assert padded.changed == 0.0  # the change sits at a padding position
    floats = fidelity.compare({"y": np.ones(3, np.float32)}, {"y": np.ones(3, np.float32) * 2})
    assert floats.changed == 0.0 and floats.most_changed() == ""


def test_an_empty_optional_output_matches_only_an_empty_optional():
    empty = {"o": None}
    assert fidelity.compare(empty, {"o": None}).exact
    for cand in ({}, {"o": np.ones(3, np.float32)}):
        assert not fidelity.compare(empty, cand).exact
    assert not fidelity.compare({"o": np.ones(3, np.float32)}, {"o": None}).exact


def test_a_sequence_output_of_tensors_of_different_shapes_is_judged_by_its_worst_element():
    ref = {"s": [np.ones(3, np.float32), np.arange(4, dtype=np.float32).reshape(2, 2)]}
    assert fidelity.compare(ref, {"s": [a.copy() for a in ref["s"]]}).exact
    changed = fidelity.compare(ref, {"s": [ref["s"][0], ref["s"][1] + 0.5]})
    assert not changed.exact and changed.max_abs_err == 0.5
    for cand in ({"s": ref["s"][:1]}, {"s": np.ones(3, np.float32)}, {}):
        assert not fidelity.compare(ref, cand).outputs[0].shape_matches


def test_cosine_of_opposite_and_zero_outputs():
    ref = {"y": np.array([1.0, 2.0], np.float32)}
    assert fidelity.compare(ref, {"y": -ref["y"]}).cosine == pytest.approx(-1.0)
    assert fidelity.compare({"y": np.zeros(2)}, {"y": np.zeros(2)}).cosine == 1.0
    assert fidelity.compare(ref, {"y": np.zeros(2, np.float32)}).cosine == 0.0


def test_fp16_and_bf16_outputs_are_judged_at_their_own_epsilon():
    import ml_dtypes

    ones = np.ones(8)
    one_ulp = {"y": (ones + 2.0**-10).astype(np.float16)}
    assert fidelity.compare({"y": ones.astype(np.float16)}, one_ulp).exact
    assert not fidelity.compare({"y": ones.astype(np.float32)}, {"y": one_ulp["y"].astype(np.float32)}).exact
    assert not fidelity.compare({"y": ones.astype(np.float16)}, {"y": (ones + 0.01).astype(np.float16)}).exact
    bf16 = ml_dtypes.bfloat16
    assert fidelity.compare({"y": ones.astype(bf16)}, {"y": (ones + 2.0**-7).astype(bf16)}).exact
    assert not fidelity.compare({"y": ones.astype(bf16)}, {"y": (ones + 0.25).astype(bf16)}).exact


def test_an_fp16_model_with_fp32_outputs_is_judged_at_fp16_precision():
    import onnx_ir as ir

    model = ir.from_onnx_text(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N] x) => (float[N] y) { h = Cast <to = 10> (x)  y = Cast <to = 1> (h) }
        """
    )
    precision = fidelity.model_precision(model)
    assert precision == np.float16
    ref, cand = {"y": np.ones(4, np.float32)}, {"y": np.full(4, 1 + 2.0**-10, np.float32)}
    assert not fidelity.compare(ref, cand).exact
    assert fidelity.compare(ref, cand, precision=precision).exact


def detector_output(rng: np.random.Generator, anchors: int = 2100) -> np.ndarray:
    """A YOLO-like ``[1, 84, anchors]``: four box rows in pixels (0..640), 80 class-score rows near 0.1."""
    boxes = rng.uniform(0, 640, size=(1, 4, anchors))
    scores = rng.uniform(0.05, 0.15, size=(1, 80, anchors))
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


def test_a_collapse_of_class_rows_beside_box_rows_is_seen_per_slice():
    rng = np.random.default_rng(0)
    ref = detector_output(rng)
    cand = ref.copy()
    cand[:, :4] += rng.normal(scale=0.5, size=cand[:, :4].shape)
    cand[:, 4:] = 0.1  # every class score collapsed to the prior
    result = fidelity.compare({"det": ref}, {"det": cand})
    assert result.cosine > 0.999
    worst = result.outputs[0].worst_slice
    assert worst.axis == 1 and worst.index >= 4 and worst.error > 0.9
    assert result.slice_error == worst.error and result.where() == f"'det' axis 1 index {worst.index}"
    row = (ref[0, worst.index].astype(np.float64), cand[0, worst.index].astype(np.float64))
    assert row[0] @ row[1] / np.linalg.norm(row[0]) / np.linalg.norm(row[1]) > 0.95  # a cosine per slice would not see it


def int8_rounded(array: np.ndarray) -> np.ndarray:
    """``array`` through one per-tensor INT8 quantize-dequantize over its range (the noise an INT8 output carries)."""
    lo, hi = float(array.min()), float(array.max())
    step = (hi - lo) / 255
    return (np.round((array - lo) / step) * step + lo).astype(array.dtype)


def test_int8_noise_on_embeddings_and_logits_is_not_flagged():
    rng = np.random.default_rng(1)
    common = rng.normal(size=384)
    embeddings = (common + 0.3 * rng.normal(size=(32, 384))).astype(np.float32)
    logits = (rng.normal(size=(32, 1000)) * 4).astype(np.float32)
    for ref in (embeddings, logits, rng.normal(size=(4, 64, 128)).astype(np.float32)):
        assert fidelity.compare({"y": ref}, {"y": int8_rounded(ref)}).slice_error < 0.1


def test_slices_near_constant_or_dead_are_judged_against_their_magnitudes():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(64, 8)).astype(np.float32)
    ref[:, 3] = 2.0 + 1e-4 * rng.normal(size=64)  # barely varies around a large value
    ref[:, 5] = 0.0  # dead
    cand = ref + 0.005 * rng.normal(size=ref.shape).astype(np.float32)
    assert fidelity.compare({"y": ref}, {"y": cand}).slice_error < 0.1
    cand[:, 3] = 3.0
    worst = fidelity.compare({"y": ref}, {"y": cand}).outputs[0].worst_slice
    assert (worst.axis, worst.index) == (1, 3) and worst.error > 1


def test_small_axes_and_the_batch_are_not_sliced():
    assert fidelity.slice_axes((4, 10)) == []  # 4 samples per class: too few for a spread
    assert fidelity.slice_axes((8, 10)) == [1]
    assert fidelity.slice_axes((1, 84, 2100)) == [1, 2]
    assert fidelity.slice_axes((100,)) == [] and fidelity.slice_axes((2, 100)) == [] and fidelity.slice_axes((2, 4, 100)) == [1, 2]


def test_padding_positions_are_left_out_of_the_relative_error():
    rng = np.random.default_rng(3)
    mask = np.ones((4, 16), np.int64)
    mask[:, 10:] = 0
    ref = rng.normal(size=(4, 16, 32)).astype(np.float32)
    cand = ref + 0.01 * rng.normal(size=ref.shape).astype(np.float32)
    cand[:, 10:] = 0.0  # what a model computes at padding is never read
    feeds = {"input_ids": np.zeros((4, 16), np.int64), "attention_mask": mask}
    assert fidelity.padding_mask(feeds) is not None
    assert fidelity.compare({"h": ref}, {"h": cand}).slice_error > 0.5
    assert fidelity.compare({"h": ref}, {"h": cand}, mask=fidelity.padding_mask(feeds)).slice_error < 0.1
    assert fidelity.padding_mask({"attention_mask": np.ones((4, 16), np.int64)}) is None
    assert fidelity.padding_mask({"images": [np.ones((4, 3)), np.ones((2, 5))], **feeds}) is not None  # a sequence input
    assert fidelity.padding_mask({"mask_image": rng.normal(size=(4, 16))}) is None


def test_a_broken_output_has_an_infinite_slice_error():
    ref = {"y": np.ones((2, 3), np.float32)}
    assert fidelity.compare(ref, {}).slice_error == float("inf")
    assert fidelity.compare(ref, {"y": np.full((2, 3), np.nan, np.float32)}).slice_error == float("inf")
