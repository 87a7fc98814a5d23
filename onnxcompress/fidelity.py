"""How close a candidate's outputs are to a reference's: the numbers every step records."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

EXACT_RELATIVE_TOLERANCE = 1e-4


@dataclasses.dataclass
class OutputFidelity:
    """Agreement of one output: max abs error, the reference's scale, cosine similarity."""

    name: str
    max_abs_err: float
    scale: float
    cosine: float
    shape_matches: bool

    @property
    def exact(self) -> bool:
        """Within the exact-pass tolerance: max abs error ≤ 1e-4 × output scale."""
        return self.shape_matches and self.max_abs_err <= EXACT_RELATIVE_TOLERANCE * self.scale


@dataclasses.dataclass
class Fidelity:
    """Agreement over all outputs; the summary fields are the worst case."""

    outputs: list[OutputFidelity]

    @property
    def max_abs_err(self) -> float:
        """Largest absolute error over all outputs."""
        return max((o.max_abs_err for o in self.outputs), default=0.0)

    @property
    def cosine(self) -> float:
        """Smallest cosine similarity over all outputs."""
        return min((o.cosine for o in self.outputs), default=1.0)

    @property
    def exact(self) -> bool:
        """Every output within the exact-pass tolerance."""
        return all(o.exact for o in self.outputs)

    def worst(self) -> OutputFidelity | None:
        """The output furthest from its tolerance."""
        return max(self.outputs, key=lambda o: (not o.shape_matches, o.max_abs_err / o.scale), default=None)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"max_abs_err": self.max_abs_err, "cosine": self.cosine, "exact": self.exact}


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> Fidelity:
    """Compare outputs by name (outputs missing from the candidate count as shape mismatches)."""
    return Fidelity([_compare_one(name, np.asarray(ref), candidate.get(name)) for name, ref in reference.items()])


def _compare_one(name: str, ref: np.ndarray, cand: np.ndarray | None) -> OutputFidelity:
    if cand is None or np.shape(cand) != ref.shape:
        return OutputFidelity(name, float("inf"), 1.0, 0.0, False)
    cand = np.asarray(cand)
    if ref.dtype == np.bool_ or not np.issubdtype(ref.dtype, np.number):
        equal = bool(np.array_equal(ref, cand))
        return OutputFidelity(name, 0.0 if equal else float("inf"), 1.0, 1.0 if equal else 0.0, True)
    r = ref.astype(np.float64).ravel()
    c = cand.astype(np.float64).ravel()
    finite = np.isfinite(r) & np.isfinite(c)
    same_nonfinite = bool(np.all((r == c) | (np.isnan(r) & np.isnan(c)) | finite))
    err = float(np.max(np.abs(r[finite] - c[finite]), initial=0.0)) if same_nonfinite else float("inf")
    scale = max(float(np.max(np.abs(r[finite]), initial=0.0)), 1.0) if r.size else 1.0
    return OutputFidelity(name, err, scale, _cosine(r[finite], c[finite]), True)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))
