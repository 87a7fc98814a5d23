"""``exclude`` options: which nodes a pass's glob patterns name, said in a note and checked.

A pattern matches a node by its name or by any name it took over in a rewrite (``names.names_of``:
a Conv that BatchNormalization was folded into still answers to the BN's name, a fused Gemm to its
MatMul's), so patterns written against the exported model keep working after ``fuse``. A pattern
that matches no node the pass would otherwise change is a one-line ``UsageError`` naming the pattern
and the closest names: a silently ignored ``exclude`` leaves changed what the user meant to keep.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable, Sequence

import onnx_ir as ir

from onnxcompress.errors import UsageError
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.names import names_of

SHOWN = 5  # names a note or an error lists before "and N more"
INSPECT_HINT = "onnxcompress inspect MODEL --nodes lists the names"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Something a pattern may exclude: its current ``key`` name, every name it answers to, its kind
    (op type, or ``initializer``) and whether the pass would change it."""

    key: str
    names: tuple[str, ...]
    kind: str
    touched: bool

    def matches(self, pattern: str) -> bool:
        """True when ``pattern`` matches any of the names (case-sensitive, as node names are)."""
        return any(fnmatch.fnmatchcase(name, pattern) for name in self.names)


def of_type(*op_types: str) -> Callable[[ir.Node], bool]:
    """``touched`` for a pass that changes nodes of these op types."""
    return lambda node: node.op_type in op_types


def node_candidates(model: ir.Model, touched: Callable[[ir.Node], bool]) -> list[Candidate]:
    """The named main-graph nodes of ``model``, each marked with whether the pass would change it (``touched``)."""
    return [Candidate(node.name, tuple(names_of(node)), node.op_type, touched(node)) for node in model.graph if node.name]


def excluded_nodes(pass_: CompressionPass, model: ir.Model, touched: Callable[[ir.Node], bool]) -> list[str]:
    """Current names of the main-graph nodes ``pass_.exclude`` matches (``resolve``), noted in the run."""
    return noted(pass_, resolve(pass_.name, pass_.exclude, node_candidates(model, touched)))


def resolve(pass_name: str, patterns: Sequence[str] | None, candidates: Sequence[Candidate], listing: str = INSPECT_HINT) -> list[str]:
    """Keys of the ``candidates`` the ``patterns`` match, in pattern order.

    ``UsageError`` for a pattern that matches no candidate the pass would change, naming the closest names and
    where to find them all (``listing``).
    """
    matched: list[str] = []
    for pattern in patterns or []:
        hits = [c for c in candidates if c.matches(pattern)]
        if not any(c.touched for c in hits):
            raise UsageError(f"{pass_name}: exclude pattern {pattern!r} {_why_nothing(pass_name, pattern, hits, candidates, listing)}")
        matched.extend(c.key for c in hits if c.key not in matched)
    return matched


def noted(pass_: CompressionPass, excluded: list[str], noun: str = "node") -> list[str]:
    """``excluded``, after a note in ``pass_``'s run says what they are (when there are any)."""
    if excluded:
        pass_.note(f"excluded {len(excluded)} {noun}{'' if len(excluded) == 1 else 's'}: {shortened(excluded)}")
    return excluded


def shortened(names: Sequence[str]) -> str:
    """The first ``SHOWN`` names, comma-separated, then how many more."""
    more = f", and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _why_nothing(pass_name: str, pattern: str, hits: Sequence[Candidate], candidates: Sequence[Candidate], listing: str) -> str:
    """The rest of the error for a pattern that excludes nothing: what it matched instead, and the names closest to it."""
    touched = [name for c in candidates if c.touched for name in c.names]
    similar = difflib.get_close_matches(pattern, touched or [n for c in candidates for n in c.names], n=3, cutoff=0.4)
    hint = f"similar: {', '.join(similar)} ({listing})" if similar else listing
    if not hits:
        return f"matches no name; {hint}"
    kinds = "/".join(sorted({c.kind for c in hits}))
    return f"matches only {kinds} nodes, which {pass_name} leaves alone anyway (e.g. {hits[0].key}); {hint}"
