"""estimate_ranges over streamed activations, and the JSON ranges file (round trip, wrong model, bad file)."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress.calibration import (
    ArrayReader,
    Ranges,
    SyntheticReader,
    estimate_ranges,
    load_ranges,
    make_estimator,
    open_reader,
    save_ranges,
)
from onnxcompress.calibration.ranges import model_hash
from onnxcompress.errors import UsageError


@pytest.fixture
def inputs() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((64, 4)).astype(np.float32)


@pytest.mark.parametrize("method, options", [("minmax", {}), ("percentile", {"percentile": 99.0}), ("entropy", {"bins": 128}), ("mse", {})])
def test_ranges_equal_the_estimator_applied_to_the_numpy_tensors(small_model, small_reference, inputs, method, options):
    ranges = estimate_ranges(small_model, ArrayReader({"x": inputs}, batch_size=5), ["h", "r"], method, **options)
    expected = small_reference(inputs)
    for name in ("h", "r"):
        estimator = make_estimator(method, **options)
        estimator.update(expected[name].astype(np.float32))
        assert ranges[name] == pytest.approx(estimator.range(), abs=1e-6)
    assert (ranges.method, ranges.options) == (method, options)


def test_minmax_ranges_are_the_exact_extremes(small_model, small_reference, inputs):
    ranges = estimate_ranges(small_model, ArrayReader({"x": inputs}, batch_size=7), ["y"])
    y = small_reference(inputs)["y"]
    assert ranges["y"] == pytest.approx((y.min(), y.max()), rel=1e-6)


def test_ranges_round_trip_through_a_file(tmp_path, small_model, inputs):
    ranges = estimate_ranges(small_model, ArrayReader({"x": inputs}), ["h", "y"], "entropy", bins=256)
    path = save_ranges(ranges, tmp_path / "ranges.json")
    loaded = load_ranges(path, small_model)
    assert loaded == ranges
    assert (loaded.method, loaded.options, loaded.model_hash) == ("entropy", {"bins": 256}, model_hash(small_model))
    assert not list(tmp_path.glob(".onnxcompress-*"))


def test_ranges_of_another_model_are_refused(tmp_path, small_model):
    path = save_ranges(Ranges({"h": (0.0, 1.0)}, model_hash="0" * 64), tmp_path / "r.json")
    with pytest.raises(UsageError, match=r"r.json: ranges were estimated for a different model \(graph hash differs\)$"):
        load_ranges(path, small_model)
    assert load_ranges(path) == {"h": (0.0, 1.0)}


def test_plain_dicts_can_be_saved(tmp_path):
    path = save_ranges({"t": (-1, 2)}, tmp_path / "plain.json")
    assert json.loads(path.read_text())["ranges"] == {"t": [-1.0, 2.0]}


@pytest.mark.parametrize("content", ["{", '{"ranges": 3}', '{"format": "other", "ranges": {}, "method": "", "options": {}, "model_sha256": ""}'])
def test_unreadable_ranges_files(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=r"bad.json: not an onnxcompress ranges file$"):
        load_ranges(path)


def test_missing_ranges_file(tmp_path):
    with pytest.raises(UsageError, match=r"none.json: no such ranges file$"):
        load_ranges(tmp_path / "none.json")


def test_a_tensor_without_finite_values_is_named():
    model = ir.from_onnx_text(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N] x) => (float[N] y) { y = Log(x) }
        """
    )
    reader = ArrayReader({"x": np.zeros(3, np.float32)})
    with pytest.raises(UsageError, match=r"^cannot estimate the range of 'y': no finite values were seen$"):
        estimate_ranges(model, reader, ["y"], "entropy")


def test_all_zero_activations_give_a_zero_range(small_model):
    assert estimate_ranges(small_model, ArrayReader({"x": np.zeros((2, 4), np.float32)}), ["r"])["r"] == (0.0, 0.0)


def _peak_bytes(model, samples: int, method: str) -> int:
    reader = SyntheticReader(model, samples=samples, batch_size=256)
    tracemalloc.start()
    estimate_ranges(model, reader, ["h", "r", "y"], method)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_memory_stays_flat_with_ten_times_more_samples(small_model, method):
    _peak_bytes(small_model, 256, method)  # one-time allocations (ORT bindings, numpy caches) are not growth
    assert _peak_bytes(small_model, 25_600, method) < 1.5 * _peak_bytes(small_model, 2_560, method)


@pytest.mark.parametrize("method, options", [("minmax", {}), ("entropy", {"bins": 128})])
def test_a_fixed_batch_of_one_gives_the_ranges_of_a_free_batch(conv_model, method, options):
    images = np.random.default_rng(6).standard_normal((16, 3, 8, 8)).astype(np.float32)
    names = ["x", "c", "y"]
    fixed = estimate_ranges(conv_model(1), ArrayReader({"x": images}, batch_size=5), names, method, **options)
    free = estimate_ranges(conv_model("N"), ArrayReader({"x": images}, batch_size=5), names, method, **options)
    for name in names:
        assert fixed[name] == pytest.approx(free[name], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("batch", ["N", "1"])
def test_ranges_with_inputs_given_once(tmp_path, stateful_model, stateful_feeds, batch):
    feeds = stateful_feeds()
    np.savez(tmp_path / "data.npz", **feeds)
    model = stateful_model(batch)
    ranges = estimate_ranges(model, open_reader(tmp_path / "data.npz", model, batch_size=6), ["scaled", "shifted", "y"])
    scaled = feeds["x"] * feeds["gain"]
    shifted = scaled + feeds["state"][feeds["step"]]
    for name, expected in {"scaled": scaled, "shifted": shifted, "y": shifted + feeds["bias"]}.items():
        assert ranges[name] == pytest.approx((expected.min(), expected.max()), rel=1e-6)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_a_tensor_that_reaches_infinity_keeps_that_end_of_its_range(method):
    # an attention mask of 0 and -inf: its finite values alone would read (0, 0), a tensor of zeros
    model = ir.from_onnx_text(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) { y = Log(x) }
        """
    )
    x = np.random.default_rng(0).uniform(0.5, 2.0, (8, 4)).astype(np.float32)
    x[::2, 1] = 0.0
    lo, hi = estimate_ranges(model, ArrayReader({"x": x}), ["y"], method)["y"]
    assert lo == -np.inf and 0.0 < hi < 1.0


def test_a_tensor_that_held_no_values_gets_no_range():
    # a key-value cache at a sequence's first step: [batch, heads, 0, head_dim] holds nothing to take a range of
    model = ir.from_onnx_text(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 2, P, 4] past, float[N, 2, S, 4] new) => (float[N, 2, T, 4] present) {
            present = Concat <axis = 2> (past, new)
        }
        """
    )
    rng = np.random.default_rng(0)
    reader = ArrayReader({"past": np.zeros((3, 2, 0, 4), np.float32), "new": rng.standard_normal((3, 2, 5, 4), dtype=np.float32)})
    ranges = estimate_ranges(model, reader, ["past", "present"])
    assert "past" not in ranges and ranges["present"][0] < 0 < ranges["present"][1]
