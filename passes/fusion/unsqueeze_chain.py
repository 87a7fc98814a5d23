"""``Unsqueeze(Unsqueeze(x, A1), A2)`` → one ``Unsqueeze`` with the combined axes (opset ≥ 13).

Ours rather than onnxscript's ``unsqueeze_unsqueeze_rule``, which takes single axes only (so a
chain of three, as MiniLM's attention-mask code has three times, keeps two nodes) and adds a
``Constant`` node per rewrite, saving no node at all.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxcompress.passes.values import constant

NAME = "unsqueeze-chain"
MIN_OPSET = 13
TRIGGER_OPS = frozenset({"Unsqueeze"})


class UnsqueezeChain(pattern.RewriteRuleClassBase):
    """Merge two Unsqueezes with constant non-negative axes."""

    def pattern(self, op, x, inner_axes, outer_axes):
        return op.Unsqueeze(op.Unsqueeze(x, inner_axes), outer_axes)

    def check(self, context, x, inner_axes, outer_axes, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        for axes in (constant(inner_axes), constant(outer_axes)):
            if axes is None or axes.ndim != 1 or (axes < 0).any():
                return result.fail("axes are not constant, non-negative 1-D lists")
        return result

    def rewrite(self, op, x, inner_axes, outer_axes, **_):
        axes = _combined_axes(constant(inner_axes).tolist(), constant(outer_axes).tolist())
        merged = op.initializer(ir.tensor(np.asarray(axes, dtype=np.int64)), name=f"{outer_axes.name}_merged_{x.name}")
        return op.Unsqueeze(x, merged)


def _combined_axes(inner: list[int], outer: list[int]) -> list[int]:
    """Axes of the final output: the outer ones, plus where each inner one lands between them."""
    kept_positions = (p for p in range(max(inner + outer) + len(outer) + 1) if p not in outer)
    landing = list(kept_positions)
    return sorted(set(outer) | {landing[a] for a in inner})


RULES = [UnsqueezeChain.rule()]
