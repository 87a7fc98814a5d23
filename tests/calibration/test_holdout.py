"""Held-out calibration samples: every fourth sample (or chunk), at most 32, never calibrated on, read as needed."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress.calibration import ArrayReader, holdout


def relu(batch: str) -> ir.Model:
    return ir.from_onnx_text(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[{batch}, 3] x, float s) => (float[{batch}, 3] y) {{ m = Mul (x, s)  y = Relu (m) }}
    """)


def numbered(count: int) -> dict[str, np.ndarray]:
    """Sample ``i`` holds ``i`` in each of its values; a scalar ``s`` goes with every batch."""
    return {"x": np.repeat(np.arange(count, dtype=np.float32)[:, None], 3, axis=1), "s": np.float32(2.0)}


def sample_ids(feeds) -> list[int]:
    return [int(v) for feed in feeds for v in feed["x"][:, 0]]


def test_every_fourth_sample_is_held_out_and_the_rest_calibrated_on() -> None:
    model, reader = relu("N"), ArrayReader(numbered(30), batch_size=7, model=relu("N"))
    held = holdout.held_out(reader, model)
    assert sample_ids(held.feeds) == list(range(3, 30, 4)) and held.samples == 7
    assert all(float(feed["s"]) == 2.0 for feed in held.feeds)
    part = holdout.CalibrationPart(reader, model)
    assert sample_ids(part.batches()) == [i for i in range(30) if i % 4 != 3]
    assert sample_ids(part.batches()) == sample_ids(part.batches())  # re-iterable, like any reader


def test_held_out_samples_run_in_few_feeds_of_bounded_size() -> None:
    model = relu("N")
    held = holdout.held_out(ArrayReader(numbered(200), batch_size=5, model=model), model)
    assert held.samples == holdout.MAX_HELD_OUT and sample_ids(held.feeds) == list(range(3, 128, 4))
    assert max(len(feed["x"]) for feed in held.feeds) <= holdout.RUN_SAMPLES
    assert len(held.feeds) <= 2 * holdout.MAX_HELD_OUT // holdout.RUN_SAMPLES  # not one per reader batch (40 here)


def test_a_fixed_batch_holds_out_whole_chunks() -> None:
    model = relu("2")
    reader = ArrayReader(numbered(20), batch_size=3, model=model)
    held = holdout.held_out(reader, model)
    assert sample_ids(held.feeds) == [6, 7, 14, 15] and all(len(feed["x"]) == 2 for feed in held.feeds)
    assert sample_ids(holdout.CalibrationPart(reader, model).batches()) == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19]


def test_too_few_samples_hold_none_out() -> None:
    model = relu("N")
    reader = ArrayReader(numbered(3), model=model)
    assert holdout.held_out(reader, model) == holdout.HeldOut([], 0)
    assert sample_ids(holdout.CalibrationPart(reader, model).batches()) == [0, 1, 2]


def test_reading_stops_once_enough_samples_are_held() -> None:
    model = relu("N")
    seen = []

    class Counting(ArrayReader):
        def batches(self):
            for batch in super().batches():
                seen.append(len(batch["x"]))
                yield batch

    holdout.held_out(Counting(numbered(10_000), batch_size=16, model=model), model)
    assert sum(seen) <= holdout.MAX_HELD_OUT * holdout.EVERY + 16


@pytest.mark.parametrize(("count", "batch", "ids", "described"), [
    (30, 3, [3, 7, 11], "the first 3 held-out calibration samples"),
    (8, 4, [3, 7, 3, 7], "the first 2 held-out calibration samples, repeated to the batch of 4"),
    (3, 2, [0, 1], "the first 2 calibration samples (too few samples to hold any out)"),
])
def test_checks_run_on_samples_no_pass_fitted_on(count, batch, ids, described) -> None:
    model = relu("N")
    feeds, text = holdout.check_samples(ArrayReader(numbered(count), batch_size=5, model=model), model, batch)
    assert sample_ids([feeds]) == ids and float(feeds["s"]) == 2.0
    assert text == described


def test_a_fixed_batch_is_checked_on_its_first_held_out_chunk() -> None:
    model = relu("2")
    feeds, text = holdout.check_samples(ArrayReader(numbered(20), batch_size=3, model=model), model, 1)
    assert sample_ids([feeds]) == [6, 7] and text == "the first held-out calibration batch (2 samples, the model's fixed batch)"
