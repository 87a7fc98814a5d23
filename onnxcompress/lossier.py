"""Which recipe only adds loss to another: what lets ``search`` skip candidates once a cheaper one fails its quality goal.

Recipe B *only adds loss* to recipe A when B runs A's passes in A's order, each with the same options except
monotone ones (``MONOTONE``: an option whose larger value, or smaller, always removes more) set at least as
far, and then possibly more passes, none of which trains the model back (``recovers``). ``prune-channels``
at ratio 0.5 only adds loss to ratio 0.3 of the same recipe, and ``prune 0.3;quantize-static`` to
``prune 0.3``. This is a heuristic, not a theorem: a later lossy pass could by chance undo some of an earlier
one's error; ``search --exhaustive`` runs every candidate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from onnxcompress.passes import CompressionPass

# pass name -> {option: +1 when a larger value loses more, -1 when a smaller one does}
MONOTONE: dict[str, dict[str, int]] = {"prune-channels": {"ratio": +1}}


@dataclasses.dataclass(frozen=True)
class Step:
    """What the comparison reads of one pass: its name, its options and whether it trains the model back."""

    name: str
    options: dict[str, Any]
    recovers: bool


def steps(passes: Sequence[CompressionPass]) -> list[Step]:
    """``passes`` as the comparison reads them (read once: a search compares every pair of its candidates)."""
    return [Step(p.name, p.options(), p.recovers) for p in passes]


def only_adds_loss(cheaper: Sequence[Step], other: Sequence[Step]) -> bool:
    """Whether ``other`` is ``cheaper`` with monotone options pushed at least as far and/or non-recovering passes appended."""
    if len(other) < len(cheaper) or list(cheaper) == list(other) or any(step.recovers for step in other[len(cheaper):]):
        return False  # shorter, the same recipe spelled twice (neither is cheaper), or trained back afterwards
    return all(_at_least_as_lossy(a, b) for a, b in zip(cheaper, other))


def _at_least_as_lossy(a: Step, b: Step) -> bool:
    monotone = MONOTONE.get(a.name, {})
    if a.name != b.name or any(a.options[k] != b.options[k] for k in a.options if k not in monotone):
        return False
    return all((b.options[k] - a.options[k]) * direction >= 0 for k, direction in monotone.items())
