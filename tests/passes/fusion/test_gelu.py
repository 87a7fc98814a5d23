"""gelu family: erf and tanh GELU → Gelu where the opset has it (20+), never below."""

from __future__ import annotations

import pytest

ERF_GELU = """
<ir_version: 10, opset_import: ["" : %d]>
g (float[3, 16] x) => (float[3, 16] y) {
    r2 = Constant<value = float {1.4142135}>()
    d = Div(x, r2)
    e = Erf(d)
    one = Constant<value = float {1.0}>()
    a = Add(e, one)
    m = Mul(x, a)
    half = Constant<value = float {0.5}>()
    y = Mul(m, half)
}
"""

TANH_GELU = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[3, 16] x) => (float[3, 16] y) {
    three = Constant<value = float {3.0}>()
    cube = Pow(x, three)
    k = Constant<value = float {0.044715}>()
    kc = Mul(cube, k)
    inner = Add(x, kc)
    c = Constant<value = float {0.7978846}>()
    t = Mul(inner, c)
    th = Tanh(t)
    one = Constant<value = float {1.0}>()
    a = Add(one, th)
    half = Constant<value = float {0.5}>()
    hx = Mul(half, x)
    y = Mul(hx, a)
}
"""


def test_erf_gelu_becomes_gelu_at_opset_20(fused, assert_exact_rewrite):
    before, after, fuse = fused(ERF_GELU % 20)
    gelus = [n for n in after.graph if n.op_type == "Gelu"]
    assert len(gelus) == 1 and len(after.graph) == 1
    assert gelus[0].attributes.get_string("approximate", "none") == "none"
    assert_exact_rewrite(before, after)


def test_tanh_gelu_becomes_tanh_approximate_gelu(fused, assert_exact_rewrite):
    before, after, fuse = fused(TANH_GELU)
    assert [n.op_type for n in after.graph] == ["Gelu"]
    assert next(iter(after.graph)).attributes.get_string("approximate") == "tanh"
    assert fuse.details["gelu"] == 1
    assert_exact_rewrite(before, after)


@pytest.mark.parametrize("opset", [17, 19])
def test_erf_gelu_is_left_below_opset_20(fused, assert_exact_rewrite, opset):
    before, after, fuse = fused(ERF_GELU % opset)
    assert "Gelu" not in [n.op_type for n in after.graph]
    assert any("gelu: not tried" in note for note in fuse.notes)
    assert_exact_rewrite(before, after)
