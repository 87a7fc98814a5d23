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


def test_agreement_on_clear_neighbours_leaves_out_near_ties():
    """Row 2's two closest rows are within 0.05 cosine of each other (0.712 and 0.702): a near-tie, which the student
    flips. Rows 0-1 and 3-4 are clear pairs, which it keeps: agreement 4/5 overall, 4/4 on the clear ones."""
    teacher = np.array([[1.0, 0.0, 0.0], [0.99, 0.14, 0.0], [0.0, 1.0, 0.0], [0.0, 0.71, 0.70], [0.0, 0.70, 0.71]])
    student = teacher.copy()
    student[2] = [0.0, 0.6, 0.8]
    f = compare_embeddings(teacher, student)
    assert f.neighbour_agreement == pytest.approx(4 / 5)
    assert f.clear_neighbours == 4 and f.clear_neighbour_agreement == 1.0
