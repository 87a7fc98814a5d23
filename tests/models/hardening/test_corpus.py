"""Every corpus entry builds a valid model that ONNX Runtime runs on its own inputs, agrees with itself
on its task, and its task fidelity falls for a candidate whose outputs are broken."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxcompress import fidelity as tensor_fidelity
from onnxcompress import io
from onnxcompress.models.hardening import ENTRIES
from onnxcompress.passes import Cleanup, FoldConstants, Fuse

SAMPLES = 4  # enough for nearest neighbours; the VGG takes about a second a sample
DETECTORS = ("yolo-head", "yolov8")
pytestmark = pytest.mark.slow  # the first run exports every model (later runs read the cache)


@functools.lru_cache(maxsize=None)
def reference(name: str) -> tuple[dict, dict]:
    """The entry's held-out feeds and its model's outputs on them."""
    entry = ENTRIES[name]
    path = entry.model()
    onnx.checker.check_model(str(path), full_check=True)
    feeds = entry.feeds("held-out", SAMPLES)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    return feeds, outputs


def scrambled(outputs: dict) -> dict:
    """Every output with its last axis reversed: each answer moves to another class, feature or anchor."""
    return {name: np.ascontiguousarray(value[..., ::-1]) for name, value in outputs.items()}


@pytest.mark.parametrize("name", list(ENTRIES))
def test_entry_builds_runs_and_its_fidelity_can_fail(name):
    entry = ENTRIES[name]
    feeds, outputs = reference(name)
    assert all(len(array) == SAMPLES for array in feeds.values())
    assert all(np.isfinite(value).all() for value in outputs.values())
    # answers at the scale float32 computes in, not vanished on the way (transformers' EfficientNet, initialised
    # with BatchNorm scales of 0.02, once gave logits near 1e-33: its task scores measured rounding)
    assert all(np.abs(value).max() > 1e-3 for value in outputs.values() if value.dtype.kind == "f")
    assert entry.fidelity(feeds, outputs, outputs).score == pytest.approx(1.0)
    assert entry.fidelity(feeds, outputs, scrambled(outputs)).score < 1.0


def test_splits_differ():
    calibration = ENTRIES["hf-vit-legacy"].feeds("calibration", 2)["pixel_values"]
    held_out = ENTRIES["hf-vit-legacy"].feeds("held-out", 2)["pixel_values"]
    assert not np.allclose(calibration, held_out)


@pytest.mark.parametrize("name", [name for name in ENTRIES if name.startswith(DETECTORS)])
def test_detector_class_collapse_is_seen_where_cosine_misses_it(name):
    feeds, outputs = reference(name)
    collapsed = {"output0": outputs["output0"].copy()}
    collapsed["output0"][:, 4:] = np.median(outputs["output0"][:, 4:])  # class scores flattened, boxes kept
    assert tensor_fidelity.compare(outputs, collapsed).cosine > 0.99
    assert ENTRIES[name].fidelity(feeds, outputs, collapsed).metrics["class_agreement"] < 0.2


@pytest.mark.parametrize("name", [name for name in ENTRIES if name.startswith("yolov8")])
def test_yolov8_keeps_its_outputs_through_the_exact_passes(name, assert_exact_rewrite):
    # fuse once wrote a YOLOv8 export out of topological order
    feeds, _ = reference(name)
    before = io.load(ENTRIES[name].model())
    after = io.clone(before)
    for pass_ in (FoldConstants(), Cleanup(), Fuse()):
        after = pass_(after).model
    assert_exact_rewrite(before, after, feeds)
