"""reshape-dims family: a Reshape that copies its input's own dims gets a constant shape with 0s."""

from __future__ import annotations

import numpy as np
import pytest

HEAD_SPLIT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, S, 8] x) => (float[N, S, 4, 2] y) <int64 first = {%d}, int64 second = {%d}, int64[1] zero = {0}, int64[2] heads = {4, 2}> {
    s = Shape(x)
    b = Gather(s, first)
    t = Gather(s, second)
    bu = Unsqueeze(b, zero)
    tu = Unsqueeze(t, zero)
    shape = Concat<axis = 0>(bu, tu, heads)
    y = Reshape<allowzero = %d>(x, shape)
}
"""
FEEDS = {"x": np.arange(3 * 5 * 8, dtype=np.float32).reshape(3, 5, 8)}


def test_copied_dims_become_a_constant_shape(fused, assert_exact_rewrite):
    before, after, fuse = fused(HEAD_SPLIT % (0, 1, 0))
    assert [n.op_type for n in after.graph] == ["Reshape"]
    reshape = next(iter(after.graph))
    assert reshape.inputs[1].const_value.numpy().tolist() == [0, 0, 4, 2]
    assert fuse.details["reshape-dims"] == 1
    assert_exact_rewrite(before, after, FEEDS)


@pytest.mark.parametrize(("first", "second", "allowzero"), [(1, 0, 0), (0, 1, 1)], ids=["dims-swapped", "allowzero"])
def test_shapes_that_do_not_copy_in_place_are_left(fused, assert_exact_rewrite, first, second, allowzero):
    before, after, fuse = fused(HEAD_SPLIT % (first, second, allowzero))
    assert "Concat" in [n.op_type for n in after.graph]
    assert fuse.details["reshape-dims"] == 0
    feeds = {"x": np.ones((5, 5, 8), np.float32)}  # square leading dims so the swapped Reshape still runs
    assert_exact_rewrite(before, after, feeds)
