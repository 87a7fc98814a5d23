"""Which units to remove: ratio per group (local) or over all groups of a kind (global), then constraints.

``scope=global`` ranks each kind of unit (attention heads, linear neurons, conv channels) on its own, so
``ratio`` removes that share of every kind and only its spread over the layers is left to the scores:
ranked together, a head (49,152 weights in MiniLM) and an FFN neuron (768) compete as equals, and
MiniLM's half went almost all to neurons (0.79x the latency, not 0.52x).

Constraints apply per group: at least ``min_channels`` units stay, and the kept count is rounded
up to a multiple of ``round_to`` (fast kernels like channel counts that are multiples of 8/16).
Frozen units are never removed and count as kept. No tensor loses every channel
(``keep_every_tensor``): a Concat's group holds the channels of each of its inputs, and the
lowest-scoring half of them can be all of one input's.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from onnxcompress.passes.pruning.graph import ChannelGraph, Slot, Unit


@dataclasses.dataclass
class Constraints:
    """Per-group limits on what may be removed."""

    ratio: float
    scope: str = "local"
    round_to: int = 1
    min_channels: int = 1


def choose(units: list[Unit], scores: np.ndarray, removable: np.ndarray, limits: Constraints, kinds: np.ndarray) -> np.ndarray:
    """Boolean mask of the units to remove (lowest scores first); ``kinds`` names each unit's kind, ranked apart under
    ``scope=global``."""
    wanted = _global_wanted(scores, removable, limits.ratio, kinds) if limits.scope == "global" else None
    remove = np.zeros(len(units), dtype=bool)
    groups = np.array([u.group for u in units])
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        candidates = members[removable[members]]
        if wanted is None:
            count = int(math.floor(limits.ratio * len(members)))
        else:
            count = int(wanted[candidates].sum())
        count = _within_limits(len(members), len(candidates), count, limits)
        remove[candidates[np.argsort(scores[candidates], kind="stable")[:count]]] = True
    return remove


def _global_wanted(scores: np.ndarray, removable: np.ndarray, ratio: float, kinds: np.ndarray) -> np.ndarray:
    """The lowest-scoring ``ratio`` of each kind's removable units, over every group of that kind at once."""
    wanted = np.zeros(len(scores), dtype=bool)
    for kind in np.unique(kinds):
        candidates = np.flatnonzero(removable & (kinds == kind))
        count = int(math.floor(ratio * len(candidates)))
        wanted[candidates[np.argsort(scores[candidates], kind="stable")[:count]]] = True
    return wanted


def _within_limits(total: int, removable: int, count: int, limits: Constraints) -> int:
    kept = max(total - min(count, removable), limits.min_channels)
    kept = min(total, math.ceil(kept / limits.round_to) * limits.round_to)
    return max(0, min(removable, total - kept))


def keep_every_tensor(graph: ChannelGraph, units: list[Unit], remove: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``remove`` with, for every tensor axis it would empty, its highest-scoring removed unit kept: a Conv with
    zero filters runs, but nothing can be measured or pruned on it again."""
    remove = remove.copy()
    covering: dict[Slot, list[int]] = {}
    removed: dict[Slot, int] = {}
    for index in np.flatnonzero(remove).tolist():
        for slot, elements in units[index].indices(graph).items():
            covering.setdefault(slot, []).append(index)
            removed[slot] = removed.get(slot, 0) + len(elements)
    for slot, members in covering.items():
        if removed[slot] >= slot.size and all(remove[m] for m in members):
            remove[max(members, key=lambda m: scores[m])] = False
    return remove
