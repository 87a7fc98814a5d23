"""Node names that survive rewrites, so users can go on naming the nodes of the model they gave.

A rewrite that replaces nodes (Conv+BatchNormalization folded into a Conv, MatMul+Add into a Gemm,
a decomposed LayerNorm into one op) would otherwise leave a generated name (``node_Conv_0``) that no
``exclude`` pattern of the user's matches. ``apply_keeping_names`` runs onnxscript rewrite rules so
that the node giving a rewrite's result (the last it creates: the Attention after the mask's Shape
and Expand) takes the name of the first node it replaced (graph order: the Conv of Conv+BN, the MatMul
of MatMul+Add), and every created node records the names of all the nodes it replaced in its
metadata (``ORIGINAL_NAMES``, a JSON list, kept in the saved model). A name still in use stays where
it is, so names stay unique.
``names_of`` reads both, and is what ``exclude`` matches and ``inspect --nodes`` shows.

The names travel on onnxscript's own metadata merge (a rewrite copies the metadata of the nodes it
matched onto the nodes it creates): each node is tagged with its names under a key of its own before
the rules run, and the tags are gathered and removed afterwards.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import onnx_ir as ir
from onnxscript.rewriter import pattern

ORIGINAL_NAMES = "onnxcompress.original_names"
_TAG = "onnxcompress.names."  # one key per node while rules run; zero-padded so keys sort in graph order


def unused_name(graph: ir.Graph, stem: str) -> str:
    """``stem``, or ``stem_1``, ``stem_2``… if a value or node of ``graph`` (not its subgraphs) is already named so."""
    taken = {*graph.initializers, *(v.name for v in graph.inputs), *(n.name for n in graph)}
    taken.update(v.name for n in graph for v in n.outputs)
    name, suffix = stem, 0
    while name in taken:
        suffix += 1
        name = f"{stem}_{suffix}"
    return name


def original_names(node: ir.Node) -> list[str]:
    """Names of the nodes a rewrite replaced by ``node`` (first the one whose name it took); empty if none."""
    recorded = node.metadata_props.get(ORIGINAL_NAMES)
    return list(json.loads(recorded)) if recorded else []


def names_of(node: ir.Node) -> list[str]:
    """Every name ``node`` answers to: its own, then the names of the nodes it replaced."""
    return list(dict.fromkeys(name for name in (node.name, *original_names(node)) if name))


def apply_keeping_names(rules: pattern.RewriteRuleSet, model: ir.Model) -> int:
    """Apply ``rules`` to ``model`` (in place) so that the names of replaced nodes survive; the number of rewrites."""
    before = set()
    for index, node in enumerate(_every_node(model)):
        before.add(node)
        names = names_of(node)
        if names:
            node.metadata_props[f"{_TAG}{index:09d}"] = json.dumps(names)
    count = rules.apply_to_model(model)
    taken = {node.name for node in _every_node(model)}
    for node in reversed(list(_every_node(model))):  # a rewrite's result is the last node it inserts
        names = _pop_tags(node)
        if node in before or not names:
            continue
        if names[0] not in taken:
            taken.add(names[0])
            node.name = names[0]
        node.metadata_props[ORIGINAL_NAMES] = json.dumps(names)
    return count


def _pop_tags(node: ir.Node) -> list[str]:
    """The names the tags on ``node`` carry (graph order, no repeats), removing the tags."""
    keys = sorted(key for key in node.metadata_props if key.startswith(_TAG))
    return list(dict.fromkeys(itertools.chain.from_iterable(json.loads(node.metadata_props.pop(key)) for key in keys)))


def _every_node(model: ir.Model) -> Iterator[ir.Node]:
    """The nodes of the main graph, its subgraphs and the model's functions (where rules also apply)."""
    yield from model.graph.all_nodes()
    for function in model.functions.values():
        yield from function.all_nodes()
