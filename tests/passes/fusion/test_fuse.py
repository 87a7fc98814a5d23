"""The fuse pass as a whole: registered, opset-gated per family, and blind to ops it does not know."""

from __future__ import annotations

import types

from onnxscript.rewriter import pattern

from onnxcompress.passes import REGISTRY, Fuse
from onnxcompress.passes.fusion import fuse as fuse_module

UNKNOWN_OP_BETWEEN = """
<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
g (float[4, 3] x) => (float[4, 2] y) <float[3, 2] w = {1, 2, 3, 4, 5, 6}, float[2] b = {0.5, -0.5}> {
    m = MatMul(x, w)
    u = com.example.Mystery(m)
    y = Add(u, b)
}
"""


def test_fuse_is_registered_as_exact():
    assert REGISTRY["fuse"] is Fuse and Fuse.exact


def test_unknown_ops_are_left_alone(fused):
    _, after, fuse = fused(UNKNOWN_OP_BETWEEN)
    assert [n.op_type for n in after.graph] == ["MatMul", "Mystery", "Add"]
    assert fuse.details["bias-add"] == 0


class _NegFromLaterAbs(pattern.RewriteRuleClassBase):
    """``Neg(x)`` → ``(a - a) - x`` with ``a`` an ``Abs(x)`` the graph computes after the Neg: onnxscript
    inserts the replacement right after the Neg, before ``a`` exists."""

    def pattern(self, op, x):
        return op.Neg(x)

    def check(self, context, x, **_) -> pattern.MatchResult:
        return pattern.MatchResult() if _later_abs(x) is not None else pattern.MatchResult().fail("no Abs of x")

    def rewrite(self, op, x, **_):
        later = _later_abs(x)
        return op.Sub(op.Sub(later, later), x)


def _later_abs(x):
    return next((user.outputs[0] for user, _ in x.uses() if user.op_type == "Abs"), None)


NEG_BEFORE_ABS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4, 3] x) => (float[4, 3] y) {
    n = Neg(x)
    a = Abs(x)
    y = Add(n, a)
}
"""


def test_a_rewrite_reading_a_later_value_leaves_the_graph_sorted(fused, monkeypatch, assert_exact_rewrite):
    family = types.ModuleType("neg_family")  # a family is a module (rule sets are cached per module)
    family.NAME, family.MIN_OPSET, family.TRIGGER_OPS, family.RULES = "neg", 1, frozenset({"Neg"}), [_NegFromLaterAbs.rule()]
    monkeypatch.setattr(fuse_module, "FAMILIES", (family,))
    before, after, fuse = fused(NEG_BEFORE_ABS)
    assert fuse.details["neg"] == 1
    assert_exact_rewrite(before, after)
