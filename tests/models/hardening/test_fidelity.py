"""Task fidelities: 1.0 for the reference's own answers, and each falls when the answers change."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import fidelity as tensor_fidelity
from onnxcompress.models.hardening import fidelity

RNG = np.random.default_rng(0)


def test_top1_counts_the_samples_whose_class_changed():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 5.0], [1.0, 0.0, 0.0]])
    judge = fidelity.top1("logits")
    assert judge({}, {"logits": logits}, {"logits": logits}).score == 1.0
    flipped = logits.copy()
    flipped[1] = [0.0, 1.0, 2.0]
    assert judge({}, {"logits": logits}, {"logits": flipped}).score == 0.75


def test_decoded_strings_compare_whole_strings():
    judge = fidelity.decoded_strings("codes", lambda codes: ["".join(map(str, row)) for row in codes])
    codes = np.array([[1, 2, 3], [4, 5, 6]])
    assert judge({}, {"codes": codes}, {"codes": codes}).metrics == {"strings_equal": 1.0}
    assert judge({}, {"codes": codes}, {"codes": codes * [[1, 1, 1], [1, 1, 0]]}).score == 0.5


def test_embeddings_see_lost_retrieval_and_a_lower_cosine_and_show_swapped_neighbours():
    base = RNG.standard_normal((8, 16))
    pairs = np.concatenate([base, base + 0.05 * RNG.standard_normal((8, 16))])  # each sample's neighbour is its twin
    judge = fidelity.embeddings("e")
    assert judge({}, {"e": pairs}, {"e": pairs}).score == pytest.approx(1.0)
    noisy = judge({}, {"e": pairs}, {"e": pairs + 2.0 * RNG.standard_normal(pairs.shape)})
    assert noisy.metrics["retrieval"] < 1.0 and noisy.metrics["mean_cosine"] < 0.9
    assert noisy.shown["nn_agreement"] < 1.0 and "nn_agreement" in noisy.to_dict()


def test_embeddings_score_retrieval_not_neighbours_decided_by_noise():
    rng = np.random.default_rng(0)
    common = 100.0 * rng.standard_normal(16)  # every sample's embedding is nearly the same vector
    reference = common + rng.standard_normal((16, 16))
    candidate = reference + 0.3 * rng.standard_normal(reference.shape)  # noise below the samples' differences
    judged = fidelity.embeddings("e")({}, {"e": reference}, {"e": candidate})
    assert judged.metrics["retrieval"] == 1.0 and judged.score > 0.99
    assert judged.shown["nn_agreement"] < 0.9  # which near-twin is closest is decided by the noise


def test_next_token_ignores_padding():
    logits = RNG.standard_normal((2, 4, 10))
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    changed = logits.copy()
    changed[:, :, :] = logits[:, :, ::-1]  # a different arg-max everywhere ...
    changed[mask == 1] = logits[mask == 1]  # ... except at the real positions
    judge = fidelity.next_token("logits", "mask")
    assert judge({"mask": mask}, {"logits": logits}, {"logits": changed}).score == 1.0
    assert judge({"mask": mask}, {"logits": logits}, {"logits": logits[:, :, ::-1]}).score < 0.5


def detector_output(anchors: int = 400) -> np.ndarray:
    """Boxes in the hundreds and class scores near 0.1, in one [2, 84, anchors] tensor."""
    boxes = RNG.uniform(20, 300, (2, 4, anchors))
    scores = 0.1 + 0.05 * RNG.standard_normal((2, 80, anchors))
    return np.concatenate([boxes, scores], axis=1)


def test_detections_see_a_class_collapse_that_cosine_hides():
    output = detector_output()
    collapsed = output.copy()
    collapsed[:, 4:] = 0.1  # every class score flattened
    judge = fidelity.detections("out")
    assert judge({}, {"out": output}, {"out": output}).score == 1.0
    assert tensor_fidelity.compare({"out": output}, {"out": collapsed}).cosine > 0.999
    result = judge({}, {"out": output}, {"out": collapsed})
    assert result.metrics["class_agreement"] < 0.1
    assert result.metrics["box_iou"] == 1.0


def test_detections_see_moved_boxes():
    output = detector_output()
    moved = output.copy()
    moved[:, 0] += 0.5 * output[:, 2]  # centres shifted by half a box width
    result = fidelity.detections("out")({}, {"out": output}, {"out": moved})
    assert result.metrics["class_agreement"] == 1.0
    assert result.metrics["box_iou"] < 0.7


def test_mask_iou_averages_the_classes_and_sees_a_small_class_lost():
    reference = np.zeros((1, 3, 4, 4), np.float32)
    reference[0, 0] = 1.0  # background everywhere ...
    reference[0, 1, :2] = 2.0  # ... class 1 on the top half ...
    reference[0, 2, 3, 3] = 3.0  # ... and class 2 on one pixel
    candidate = reference.copy()
    candidate[0, 2, 3, 3] = 0.0  # that pixel becomes background
    judged = fidelity.mask_iou("logits")({}, {"logits": reference}, {"logits": candidate})
    # classes 0, 1, 2: IoU 7/8, 1, 0; one pixel in 16 changed
    assert judged.score == pytest.approx((7 / 8 + 1 + 0) / 3)
    assert judged.shown["pixel_agreement"] == pytest.approx(15 / 16)
    assert fidelity.mask_iou("logits")({}, {"logits": reference}, {"logits": reference}).score == 1.0
