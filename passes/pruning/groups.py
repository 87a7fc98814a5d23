"""What a removal did, per group: its kind, name, removed/kept/frozen counts and why frozen.

Only groups holding weights are reported (spatial and batch axes form groups too, but nothing there
is a channel). A group's name is its first weight tensor and axis, e.g. ``conv1.weight[0]``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import NOT_A_CHANNEL, ChannelGraph, Slot, Unit

CONV_OPS = ("Conv", "ConvTranspose")


@dataclasses.dataclass
class GroupInfo:
    """Static facts about one group of coupled axes."""

    name: str
    kind: str


def is_weight(slot: Slot) -> bool:
    """A floating-point initializer that cannot be overridden at run time."""
    return stored_weight(slot.value) is slot.value


def stored_weight(value: ir.Value) -> ir.Value | None:
    """The floating-point initializer holding ``value``'s numbers: ``value`` itself, or the one a ``Cast`` reads
    (weights stored in float16 and computed in float32); None for an activation or an overridable input."""
    producer = value.producer()
    if value.const_value is None and producer is not None and producer.op_type == "Cast":
        value = producer.inputs[0]
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value if value.const_value.dtype.is_floating_point() else None


def weighted_contractions(graph: ChannelGraph) -> list[tuple[Slot, Slot]]:
    """(activation, weight) slot pairs of every contraction that reads an activation with a weight."""
    return [(x, w) for x, w in graph.contractions if stored_weight(w.value) is not None and stored_weight(x.value) is None]


def weight_array(slot: Slot) -> np.ndarray:
    """The stored numbers of a weight slot of ``weighted_contractions``."""
    return stored_weight(slot.value).const_value.numpy()


def group_infos(graph: ChannelGraph) -> dict[int, GroupInfo]:
    """Name and kind (``heads``, ``neurons`` of linear layers, or conv ``channels``) of every weighted group."""
    infos: dict[int, GroupInfo] = {}
    heads: set[int] = set()
    conv: set[int] = set()
    for slot in graph.slots():
        group = graph.group_of(slot)
        if slot.offset in graph.head_slots:
            heads.add(group)
        if not is_weight(slot):
            continue
        read_as = _read_as(graph, slot)
        if not any(_not_a_channel(graph, s) for s in read_as):
            if any(node.op_type in CONV_OPS for s in read_as for node, _ in s.value.uses()):
                conv.add(group)
            infos.setdefault(group, GroupInfo(f"{slot.value.name}[{slot.axis}]", "neurons"))
    for group, info in infos.items():
        info.kind = "heads" if group in heads else "channels" if group in conv else "neurons"
    return infos


def _read_as(graph: ChannelGraph, slot: Slot) -> list[Slot]:
    """A weight slot and, for a weight stored in float16, the same axis of each Cast reading it: what its ops see."""
    casts = [node.outputs[0] for node, _ in slot.value.uses() if node.op_type == "Cast"]
    return [slot, *filter(None, (graph.find(value, slot.axis) for value in casts))]


def _not_a_channel(graph: ChannelGraph, slot: Slot) -> bool:
    """Kernel and other non-channel axes are frozen by their op's rule with ``NOT_A_CHANNEL``."""
    return graph.frozen.get(slot.offset, "").endswith(NOT_A_CHANNEL)


def group_report(
    graph: ChannelGraph, units: list[Unit], infos: dict[int, GroupInfo], remove: np.ndarray, frozen: list[str | None]
) -> list[dict]:
    """One JSON-ready record per weighted group: removed, kept, frozen units and the first reason."""
    records: dict[int, dict] = {}
    for unit, removed, reason in zip(units, remove.tolist(), frozen):
        info = infos.get(unit.group)
        if info is None:
            continue
        record = records.setdefault(
            unit.group, {"group": info.name, "kind": info.kind, "removed": 0, "kept": 0, "frozen": 0, "reason": None}
        )
        record["removed" if removed else "kept"] += 1
        if reason is not None:
            record["frozen"] += 1
            record["reason"] = record["reason"] or reason
    return list(records.values())


def frozen_summary(records: list[dict]) -> str:
    """The commonest reason the groups of ``records`` (``group_report``'s) are frozen, counted without the node each
    names (``Conv 'a': weight shape unknown``), with one example node; '' when none is frozen."""
    split = [r["reason"].partition(": ") for r in records if r["reason"]]  # (node, ": ", cause), or (cause, "", "")
    if not split:
        return ""
    cause, count = Counter(tail or head for head, _, tail in split).most_common(1)[0]
    node = next((head for head, _, tail in split if tail == cause), None)
    return f"{count} of {len(records)} groups are frozen because {cause}{f', e.g. at {node}' if node else ''}"
