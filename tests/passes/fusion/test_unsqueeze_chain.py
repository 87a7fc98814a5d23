"""unsqueeze-chain family: consecutive Unsqueezes with constant axes merge into one."""

from __future__ import annotations

CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[3, 4] x) => (float[1, 3, 1, 1, 4] y) <int64[1] a = {1}, int64[1] b = {0}, int64[1] c = {%s}> {
    u1 = Unsqueeze(x, a)
    u2 = Unsqueeze(u1, b)
    y = Unsqueeze(u2, c)
}
"""


def test_three_unsqueezes_become_one(fused, assert_exact_rewrite):
    before, after, fuse = fused(CHAIN % "3")
    assert [n.op_type for n in after.graph] == ["Unsqueeze"]
    assert next(iter(after.graph)).inputs[1].const_value.numpy().tolist() == [0, 2, 3]
    assert fuse.details["unsqueeze-chain"] == 2
    assert_exact_rewrite(before, after)


def test_negative_axes_are_left(fused, assert_exact_rewrite):
    before, after, fuse = fused(CHAIN % "-2")
    assert [n.op_type for n in after.graph] == ["Unsqueeze", "Unsqueeze"]
    assert fuse.details["unsqueeze-chain"] == 1
    assert_exact_rewrite(before, after)
