"""How faithfully a student's sentence embeddings reproduce the teacher's, on held-out sentences.

Cosine per sentence says whether each vector points the same way; nearest-neighbour agreement and
the rank correlation of all pairwise similarities say whether the embedding *space* is the same,
which is what search and clustering built on the embeddings rely on. Where the teacher's nearest
neighbour barely leads the next (unrelated sentences), which one wins is a near-tie any small error
flips, so agreement is also given on the sentences whose neighbour is clear.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import spearmanr

CLEAR_MARGIN = 0.05  # cosine by which a teacher's nearest neighbour must lead its second for the neighbour to count as clear


@dataclasses.dataclass
class EmbeddingFidelity:
    """Student vs teacher embeddings of the same sentences."""

    mean_cosine: float
    min_cosine: float
    neighbour_agreement: float
    spearman: float
    sentences: int
    clear_neighbour_agreement: float  # on the sentences whose teacher neighbour leads the next by CLEAR_MARGIN
    clear_neighbours: int  # how many sentences those are

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def compare_embeddings(teacher: np.ndarray, student: np.ndarray) -> EmbeddingFidelity:
    """Cosine per row, top-1 neighbour agreement, and Spearman ρ of the pairwise cosine similarities."""
    t, s = _unit_rows(teacher), _unit_rows(student)
    cosines = row_cosines(teacher, student)
    t_sim, s_sim = t @ t.T, s @ s.T
    upper = np.triu_indices(len(t), k=1)
    agrees = _nearest(t_sim) == _nearest(s_sim)
    clear = _lead(t_sim) >= CLEAR_MARGIN
    return EmbeddingFidelity(
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        neighbour_agreement=float(np.mean(agrees)),
        spearman=float(spearmanr(t_sim[upper], s_sim[upper]).statistic),
        sentences=len(t),
        clear_neighbour_agreement=float(np.mean(agrees[clear])) if clear.any() else float("nan"),
        clear_neighbours=int(clear.sum()),
    )


def row_cosines(teacher: np.ndarray, student: np.ndarray) -> np.ndarray:
    """Each row's cosine between ``teacher`` and ``student`` (without the pairwise measures ``compare_embeddings`` adds)."""
    return np.sum(_unit_rows(teacher) * _unit_rows(student), axis=1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _nearest(similarity: np.ndarray) -> np.ndarray:
    """Index of each row's most similar other row."""
    return _others(similarity).argmax(axis=1)


def _lead(similarity: np.ndarray) -> np.ndarray:
    """How much each row's most similar other row leads its second most similar."""
    top_two = np.sort(_others(similarity), axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def _others(similarity: np.ndarray) -> np.ndarray:
    """``similarity`` with each row's similarity to itself out of the running."""
    masked = similarity.copy()
    np.fill_diagonal(masked, -np.inf)
    return masked
