"""The channel dependency graph: which tensor elements must disappear together.

Every static axis of every tensor (activations and weights alike) is a *slot*; each index along a
slot is an *element*. Op rules (``rules/``) couple elements with a union-find: a Conv couples its
output channel c with row c of its weight and bias, a Concat couples input channel i with output
channel offset+i, a Flatten couples channel c with features [c·S, (c+1)·S), a head-split Reshape
couples column j with head j // d. A connected component is a *unit* (one filter, one neuron, one
head): removing it means slicing every element it contains. A rule that does not mention an axis
of its node freezes it, so an op without a rule freezes everything it touches; graph inputs and
outputs are frozen. Working per element instead of per axis is what lets Concat offsets, Flatten
blocks and attention heads use the same machinery as plain channels.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.values import rank_or_zero


@dataclasses.dataclass(frozen=True)
class Slot:
    """One static axis of one tensor and where its elements start in the element space."""

    value: ir.Value
    axis: int
    size: int
    offset: int


@dataclasses.dataclass
class Unit:
    """A set of elements that can only be removed together (a channel, a neuron, a head)."""

    elements: np.ndarray
    group: int

    def indices(self, graph: ChannelGraph) -> dict[Slot, list[int]]:
        """The indices this unit covers, per slot."""
        found: dict[Slot, list[int]] = {}
        for element in self.elements.tolist():
            slot = graph.slot_of(element)
            found.setdefault(slot, []).append(element - slot.offset)
        return found


class ChannelGraph:
    """Union-find over the elements of every static tensor axis, with frozen elements and reasons."""

    def __init__(self) -> None:
        self._slots: dict[tuple[int, int], Slot] = {}
        self._starts: list[int] = []
        self._ordered: list[Slot] = []
        self._parent: list[int] = []
        self._slot_parent: list[int] = []
        self.frozen: dict[int, str] = {}
        self._frozen_roots: set[int] = set()  # roots of components holding a frozen element (``all_frozen``)
        self.contractions: list[tuple[Slot, Slot]] = []
        self.head_slots: set[int] = set()

    def slot(self, value: ir.Value, axis: int) -> Slot | None:
        """The slot of ``value``'s axis, created on first use; None when the size is not static."""
        key = (id(value), axis)
        if key in self._slots:
            return self._slots[key]
        size = _static_dim(value, axis)
        if size is None:
            return None
        slot = Slot(value, axis, size, len(self._parent))
        self._slots[key] = slot
        self._starts.append(slot.offset)
        self._ordered.append(slot)
        self._parent.extend(range(slot.offset, slot.offset + size))
        self._slot_parent.append(len(self._ordered) - 1)
        return slot

    def find(self, value: ir.Value, axis: int) -> Slot | None:
        """The slot of ``value``'s axis if the graph has one (``slot`` without creating it)."""
        return self._slots.get((id(value), axis))

    @property
    def element_count(self) -> int:
        """Number of elements over all slots (the length of per-element score arrays)."""
        return len(self._parent)

    def slot_of(self, element: int) -> Slot:
        """The slot an element belongs to."""
        return self._ordered[self._index(element)]

    def slots(self) -> list[Slot]:
        """Every slot, in creation order."""
        return list(self._ordered)

    def union(self, a: int, b: int) -> None:
        """Couple two elements (and therefore their slots' groups)."""
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[rb] = ra
            if rb in self._frozen_roots:
                self._frozen_roots.add(ra)
        sa, sb = self._find_slot(self._index(a)), self._find_slot(self._index(b))
        if sa != sb:
            self._slot_parent[sb] = sa

    def freeze(self, slot: Slot, reason: str, indices: Iterable[int] | None = None) -> None:
        """Forbid removing the given elements (default: all) of ``slot``, recording why."""
        for i in range(slot.size) if indices is None else indices:
            self.frozen.setdefault(slot.offset + i, reason)
            self._frozen_roots.add(self._find(slot.offset + i))

    def all_frozen(self, slot: Slot) -> bool:
        """Whether every element of ``slot`` is coupled to a frozen element so far (its unit cannot go)."""
        return all(self._find(slot.offset + i) in self._frozen_roots for i in range(slot.size))

    def group_of(self, slot: Slot) -> int:
        """The group (component of coupled slots) a slot belongs to."""
        return self._find_slot(self._index(slot.offset))

    def units(self) -> list[Unit]:
        """Connected components of elements, each tagged with its group (its slots' component)."""
        roots = np.array([self._find(e) for e in range(len(self._parent))], dtype=np.int64)
        order = np.argsort(roots, kind="stable")
        bounds = np.flatnonzero(np.diff(roots[order])) + 1
        return [
            Unit(members, self._find_slot(self._index(int(members[0]))))
            for members in np.split(order, bounds)
            if len(members)
        ]

    def unit_of(self, element: int) -> int:
        """An id of the unit an element belongs to: equal for two elements exactly when they are coupled."""
        return self._find(element)

    def frozen_reason(self, unit: Unit) -> str | None:
        """Why a unit cannot be removed, or None when it can."""
        for element in unit.elements.tolist():
            if element in self.frozen:
                return self.frozen[element]
        return None

    def _index(self, element: int) -> int:
        return bisect.bisect_right(self._starts, element) - 1

    def _find(self, x: int) -> int:
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def _find_slot(self, x: int) -> int:
        parent = self._slot_parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x


class Coupler:
    """What one rule sees: couple axes of its node; axes it never mentions get frozen afterwards.

    ``layernorm`` says whether the user accepted lossy removal across LayerNormalization.
    """

    def __init__(self, graph: ChannelGraph, node: ir.Node, *, layernorm: bool = False) -> None:
        self.graph = graph
        self.node = node
        self.layernorm = layernorm
        self.mentioned: set[tuple[int, int]] = set()

    @property
    def where(self) -> str:
        """The node, for reasons: ``Conv 'name'``."""
        return f"{self.node.op_type} {self.node.name!r}"

    def same(self, a: ir.Value, a_axis: int, b: ir.Value, b_axis: int) -> None:
        """Couple element i of one axis with element i of the other (sizes must match)."""
        self.mapped(a, a_axis, b, b_axis, None)

    def blocks(self, outer: ir.Value, outer_axis: int, inner: ir.Value, inner_axis: int) -> None:
        """Couple element c of ``outer`` with elements [c·S, (c+1)·S) of ``inner`` (S = size ratio)."""
        so, si = self.graph.slot(outer, outer_axis), self.graph.slot(inner, inner_axis)
        self._mention(outer, outer_axis, inner, inner_axis)
        if so is None or si is None or si.size % so.size:
            self._freeze_pair(so, si, "sizes are not static multiples")
            return
        self.mapped(inner, inner_axis, outer, outer_axis, np.arange(si.size) // (si.size // so.size))

    def mapped(self, a: ir.Value, a_axis: int, b: ir.Value, b_axis: int, to_b: Sequence[int] | None) -> None:
        """Couple element i of ``a``'s axis with element ``to_b[i]`` of ``b``'s (-1: not coupled)."""
        self._mention(a, a_axis, b, b_axis)
        sa, sb = self.graph.slot(a, a_axis), self.graph.slot(b, b_axis)
        if sa is None or sb is None:
            self._freeze_pair(sa, sb, "size is not static")
            return
        mapping = np.arange(sa.size) if to_b is None else np.asarray(to_b)
        if to_b is None and sa.size != sb.size:
            self._freeze_pair(sa, sb, "sizes differ")
            return
        for i, j in enumerate(mapping.tolist()):
            if j >= 0:
                self.graph.union(sa.offset + i, sb.offset + j)

    def periods(self, merged: ir.Value, merged_axis: int, inner: ir.Value, inner_axis: int) -> None:
        """Couple element k of a merged axis with element k mod S of the inner axis merged into it (S its size): a
        channel inside a merge whose outer axes are no channels (a bidirectional LSTM's directions before its
        features)."""
        sm, si = self.graph.slot(merged, merged_axis), self.graph.slot(inner, inner_axis)
        self.mapped(merged, merged_axis, inner, inner_axis, None if sm is None or si is None else np.arange(sm.size) % si.size)

    def contract(self, x: ir.Value, x_axis: int, w: ir.Value, w_axis: int) -> None:
        """Couple an axis that is summed away (Conv/Gemm/MatMul reduction) and record the pair."""
        self.same(x, x_axis, w, w_axis)
        sx, sw = self.graph.slot(x, x_axis), self.graph.slot(w, w_axis)
        if sx is not None and sw is not None:
            self.graph.contractions.append((sx, sw))

    def grouped_contract(self, x: ir.Value, x_axis: int, w: ir.Value, w_axis: int, groups: int) -> None:
        """``contract`` for a grouped convolution's input: each of ``groups`` equal blocks of channels is read by its
        group's filters through the same weight slices, so position j of every block goes with slice j."""
        sx, sw = self.graph.slot(x, x_axis), self.graph.slot(w, w_axis)
        if sx is None or sw is None or sx.size != groups * sw.size:
            self._mention(x, x_axis, w, w_axis)
            self._freeze_pair(sx, sw, "channels are not the groups times the weight's slices")
            return
        self.mapped(x, x_axis, w, w_axis, np.arange(sx.size) % sw.size)
        self.graph.contractions.append((sx, sw))

    def equal_blocks(self, value: ir.Value, axis: int, blocks: int) -> None:
        """Couple position j of each of ``blocks`` equal blocks of an axis: a grouped convolution's filters, every
        group keeping as many as the others."""
        slot = self.graph.slot(value, axis)
        if slot is None or slot.size % blocks:
            self._mention(value, axis, value, axis)
            self._freeze_pair(slot, None, "filters are not a static multiple of the groups")
            return
        self.mapped(value, axis, value, axis, np.arange(slot.size) % (slot.size // blocks))

    def split_heads(self, x: ir.Value, x_axis: int, y: ir.Value, y_axis: int, inner: int | None = None) -> None:
        """Couple a feature axis with the head axis it is split into (head h ↔ its block of features). ``inner``: the
        elements of the axes after the head axis in the split, when axes before it (a stacked q/k/v selector) repeat
        the heads: head h is then every block of ``inner`` features at h modulo the heads."""
        if inner is None:
            self.blocks(y, y_axis, x, x_axis)
        else:
            sx = self.graph.slot(x, x_axis)
            self.mapped(x, x_axis, y, y_axis, None if sx is None else (np.arange(sx.size) // inner) % y.shape[y_axis])
        self.mark_heads(y, y_axis)

    def mark_heads(self, value: ir.Value, axis: int) -> None:
        """Record that the units of an axis are attention heads (their groups are reported as ``heads``)."""
        slot = self.graph.slot(value, axis)
        if slot is not None:
            self.graph.head_slots.add(slot.offset)

    def handle(self, value: ir.Value, axis: int) -> None:
        """Declare an axis handled without coupling it (e.g. a broadcast axis of size 1)."""
        self.mentioned.add((id(value), axis))

    def freeze(self, value: ir.Value, axis: int, reason: str, indices: Iterable[int] | None = None) -> None:
        """Freeze (some elements of) an axis of this node with a reason."""
        self.handle(value, axis)
        slot = self.graph.slot(value, axis)
        if slot is not None:
            self.graph.freeze(slot, f"{self.where}: {reason}", indices)

    def freeze_unmentioned(self, default_reason: str) -> None:
        """Freeze every axis of the node's inputs and outputs no coupling mentioned."""
        for value in (*self.node.inputs, *self.node.outputs):
            for axis in range(rank_or_zero(value)):
                if (id(value), axis) not in self.mentioned:
                    self.freeze(value, axis, default_reason)

    def _mention(self, a: ir.Value, a_axis: int, b: ir.Value, b_axis: int) -> None:
        self.mentioned.update({(id(a), a_axis), (id(b), b_axis)})

    def _freeze_pair(self, sa: Slot | None, sb: Slot | None, reason: str) -> None:
        for slot in (sa, sb):
            if slot is not None:
                self.graph.freeze(slot, f"{self.where}: {reason}")


NOT_A_CHANNEL = "not a channel axis of this op"
PROBED = "pruning.probe_shapes"  # a value's meta entry: its shapes in the two probe runs (dependencies.infer_shapes)


def _static_dim(value: ir.Value, axis: int) -> int | None:
    if value.shape is None or axis >= len(value.shape):
        return None
    dim = value.shape[axis]
    return dim if isinstance(dim, int) else None
