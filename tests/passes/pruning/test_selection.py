"""Which units ``choose`` removes: per group (local) or per kind over all groups (global)."""

from __future__ import annotations

import numpy as np

from onnxcompress.passes.pruning.graph import Unit
from onnxcompress.passes.pruning.selection import Constraints, choose


def _units(groups: list[int]) -> list[Unit]:
    return [Unit(np.array([i]), group) for i, group in enumerate(groups)]


def test_global_scope_removes_the_ratio_of_each_kind_not_of_all_units_together():
    # two head groups of 2 scoring 10..13 beside two neuron groups of 4 scoring 0..8: ranked together, half of the
    # 12 units would be 6 neurons and no head
    groups = [0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    kinds = np.array(["heads"] * 4 + ["neurons"] * 8)
    scores = np.array([10, 13, 11, 12, 0, 1, 2, 8, 3, 4, 5, 6], dtype=float)
    remove = choose(_units(groups), scores, np.ones(12, dtype=bool), Constraints(0.5, "global"), kinds)
    assert remove[kinds == "heads"].sum() == 2 and remove[kinds == "neurons"].sum() == 4
    assert remove.tolist()[:4] == [True, False, True, False]  # the lowest head of each head group
    assert remove.tolist()[4:] == [True, True, True, False, True, False, False, False]  # layers keep different counts


def test_local_scope_removes_the_ratio_of_every_group():
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = np.array([0, 1, 2, 3, 10, 11, 12, 13], dtype=float)
    remove = choose(_units(groups), scores, np.ones(8, dtype=bool), Constraints(0.5, "local"), np.array(["neurons"] * 8))
    assert remove.tolist() == [True, True, False, False, True, True, False, False]
