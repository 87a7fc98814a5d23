"""Embedding fidelity metrics against hand-checked cases."""

import numpy as np
import pytest

from onnxcompress.apps.embedding_fidelity import compare_embeddings, row_cosines


def test_identical_embeddings_are_perfect():
    x = np.random.default_rng(0).normal(size=(6, 4))
    f = compare_embeddings(x, 3.0 * x)  # scale does not matter
    assert f.mean_cosine == pytest.approx(1.0) and f.min_cosine == pytest.approx(1.0)
    assert f.neighbour_agreement == 1.0 and f.spearman == pytest.approx(1.0)


def test_hand_computed_case():
    teacher = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    student = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    f = compare_embeddings(teacher, student)
    assert row_cosines(teacher, 2.0 * student) == pytest.approx([1.0, 1.0, 0.0])
    assert f.mean_cosine == pytest.approx((1 + 1 + 0) / 3)
    assert f.min_cosine == pytest.approx(0.0)
    # teacher neighbours: 0→2, 1→2, 2→0 (tie with 1, argmax keeps the first); student: 0→2, 1→0, 2→0
    assert f.neighbour_agreement == pytest.approx(2 / 3)
    # pairs (0,1),(0,2),(1,2): teacher sims 0, .707, .707; student 0, .707, -.707 → ranks (1,2.5,2.5) vs (2,3,1):
    # centred (-1,.5,.5)·(0,1,-1) = 0, so no rank correlation
    assert f.spearman == pytest.approx(0.0)
