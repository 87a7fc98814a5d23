"""What every pruning rule is: ``Rule`` (registers itself by domain and op type in ``RULES`` when defined),
``rule_for`` (a node's rule) and ``Refused``.

Kept apart from the package front (which imports every rule module) so that a rule module can import them
without importing that front, which would import it back.
"""

from __future__ import annotations

from typing import ClassVar

import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler

RULES: dict[tuple[str, str], Rule] = {}  # (domain, op type) -> rule; the default domain is ""


def rule_for(node: ir.Node) -> Rule | None:
    """The rule of ``node``'s op in its domain (``ai.onnx`` is the default domain), or None."""
    return RULES.get(("" if node.domain == "ai.onnx" else node.domain, node.op_type))


class Refused(Exception):
    """A rule cannot prove the node consistent under removal; its axes get frozen with this reason."""


class Rule:
    """Couples the axes of one family of ops; subclasses list their ``ops`` and register on definition."""

    ops: ClassVar[tuple[str, ...]] = ()
    domain: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for op in cls.ops:
            if (cls.domain, op) in RULES:
                raise RuntimeError(f"two pruning rules for {cls.domain}::{op}")
            RULES[(cls.domain, op)] = cls()

    def couple(self, node: ir.Node, c: Coupler) -> None:
        """Couple the node's axes in ``c`` (raise ``Refused`` to freeze them all)."""
        raise NotImplementedError

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        """Update attributes/shape constants after ``removed`` (indices by ``(id(value), axis)``)."""
