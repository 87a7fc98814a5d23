"""Task-level agreement of a candidate's outputs with the reference's, one factory per kind of task.

Each factory returns ``judge(feeds, reference, candidate) -> TaskFidelity`` whose metrics are all in
[0, 1] and equal 1.0 when the candidate gives the reference's answers. They judge answers, not
tensors: a classifier by its top-1, a recogniser by its decoded strings, an encoder by which
sample is each sample's nearest neighbour, a detector by the classes and boxes of its strongest
anchors, so a collapse of a small part of an output cannot hide behind the rest of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from onnxcompress.models.hardening.entry import Feeds, Fidelity, Outputs, TaskFidelity


def top1(output: str) -> Fidelity:
    """Classifier: the share of samples whose arg-max over the last axis of ``output`` is the reference's."""

    def judge(feeds: Feeds, reference: Outputs, candidate: Outputs) -> TaskFidelity:
        agree = np.argmax(reference[output], axis=-1) == np.argmax(candidate[output], axis=-1)
        return TaskFidelity("top-1 agreement", {"top1_agreement": float(agree.mean())})

    return judge


def decoded_strings(output: str, decode: Callable[[np.ndarray], Sequence[str]]) -> Fidelity:
    """Recogniser: the share of samples whose ``decode``d text is the reference's, letter for letter."""

    def judge(feeds: Feeds, reference: Outputs, candidate: Outputs) -> TaskFidelity:
        expected, got = decode(reference[output]), decode(candidate[output])
        same = [a == b for a, b in zip(expected, got, strict=True)]
        return TaskFidelity("decoded strings equal", {"strings_equal": float(np.mean(same))})

    return judge


def embeddings(output: str) -> Fidelity:
    """Encoder: retrieval (each sample's candidate embedding finds its own reference embedding as the closest of
    all the references by cosine) and the mean cosine between each sample's candidate and reference embedding.

    Retrieval is what swapping in a compressed encoder must keep: queries it embeds are searched against an
    index the original built. Nearest-neighbour agreement (each sample's closest other sample is the
    reference's) is shown beside it but not scored: on an encoder whose embeddings of different inputs
    agree to a cosine of 0.99998 (a randomly initialised Whisper encoder), which neighbour is closest is
    decided by differences smaller than any INT8 rounding, and it measures that noise, not the task.
    """

    def judge(feeds: Feeds, reference: Outputs, candidate: Outputs) -> TaskFidelity:
        ref, cand = _unit_rows(reference[output]), _unit_rows(candidate[output])
        retrieval = float(np.mean(np.argmax(cand @ ref.T, axis=1) == np.arange(len(ref))))
        agreement = float(np.mean(_nearest_other(ref) == _nearest_other(cand)))
        cosine = float(np.clip(np.mean(np.sum(ref * cand, axis=1)), -1.0, 1.0))
        return TaskFidelity("retrieval against the reference's embeddings, mean cosine",
                            {"retrieval": retrieval, "mean_cosine": cosine}, {"nn_agreement": agreement})

    return judge


def next_token(output: str, mask_input: str) -> Fidelity:
    """Language model: the share of real (unmasked) positions whose most likely next token is the reference's."""

    def judge(feeds: Feeds, reference: Outputs, candidate: Outputs) -> TaskFidelity:
        real = np.asarray(feeds[mask_input]).astype(bool)
        agree = np.argmax(reference[output], axis=-1) == np.argmax(candidate[output], axis=-1)
        return TaskFidelity("next-token top-1 agreement", {"next_token_agreement": float(agree[real].mean())})

    return judge


def detections(output: str, box_rows: int = 4, top: int = 50) -> Fidelity:
    """Detector with boxes and class scores in one ``[batch, box_rows + classes, anchors]`` output:
    on each sample's ``top`` anchors by the reference's best class score, the share whose best class
    is the reference's, and the mean IoU of their boxes (``cx, cy, w, h``) with the reference's."""

    def judge(feeds: Feeds, reference: Outputs, candidate: Outputs) -> TaskFidelity:
        ref, cand = np.asarray(reference[output], np.float64), np.asarray(candidate[output], np.float64)
        strongest = np.argsort(-ref[:, box_rows:].max(axis=1), axis=1)[:, :top]
        ref_top, cand_top = _anchors(ref, strongest), _anchors(cand, strongest)
        classes = np.argmax(ref_top[:, box_rows:], axis=1) == np.argmax(cand_top[:, box_rows:], axis=1)
        iou = _box_iou(ref_top[:, :box_rows], cand_top[:, :box_rows])
        return TaskFidelity(
            f"class agreement and box IoU on the top-{top} anchors",
            {"class_agreement": float(classes.mean()), "box_iou": float(iou.mean())},
        )

    return judge


def mask_iou(output: str) -> Fidelity:
    """Segmenter: the mean over classes of the IoU between the reference's and the candidate's per-pixel classes (the
    arg-max over axis 1 of ``[N, classes, H, W]`` scores), with the share of pixels given the same class beside it."""

    def judge(feeds: Feeds, reference: Outputs, candidate: Outputs) -> TaskFidelity:
        ref, cand = np.argmax(reference[output], axis=1), np.argmax(candidate[output], axis=1)
        ious = [np.sum((ref == c) & (cand == c)) / np.sum((ref == c) | (cand == c))
                for c in range(reference[output].shape[1]) if np.any((ref == c) | (cand == c))]
        return TaskFidelity("mean IoU of the per-pixel classes", {"mean_iou": float(np.mean(ious))},
                            {"pixel_agreement": float(np.mean(ref == cand))})

    return judge


def _unit_rows(array: np.ndarray) -> np.ndarray:
    rows = np.asarray(array, np.float64).reshape(len(array), -1)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _nearest_other(unit: np.ndarray) -> np.ndarray:
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argmax(similarity, axis=1)


def _anchors(output: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The ``[batch, rows, k]`` columns of a ``[batch, rows, anchors]`` output at ``index`` ``[batch, k]``."""
    return np.take_along_axis(output, index[:, None, :], axis=2)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``[batch, 4, n]`` centre-size boxes, element by element (0 where a box is empty)."""
    def corners(t):
        return t[:, 0] - t[:, 2] / 2, t[:, 1] - t[:, 3] / 2, t[:, 0] + t[:, 2] / 2, t[:, 1] + t[:, 3] / 2

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = np.clip(ax1 - ax0, 0, None) * np.clip(ay1 - ay0, 0, None) + np.clip(bx1 - bx0, 0, None) * np.clip(by1 - by0, 0, None) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
