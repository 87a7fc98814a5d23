"""shapes_without_lookups: a Shape of a table lookup becomes the indices' shape and the row shape, exactly."""

from __future__ import annotations

import numpy as np

from onnxcompress import io
from onnxcompress.passes.pruning.lookup_shapes import shapes_without_lookups

LOOKUP_READ_FOR_ITS_SHAPE = """<ir_version: 8, opset_import: ["" : 17]>
g (int64[N, S] ids) => (float[N, S, 8] y) {
  rows = Gather <axis = 0> (table, ids)
  whole = Shape <start = 0> (rows)
  one = Constant <value = int64[1] {1}> ()
  length = Gather <axis = 0> (whole, one)
  lengths = Cast <to = 1> (length)
  scaled = Mul (rows, lengths)
  y = Relu (scaled)
}"""


def test_the_shape_of_a_lookup_comes_from_its_indices_and_rows(make_model, assert_exact_rewrite):
    before = make_model(LOOKUP_READ_FOR_ITS_SHAPE, {"table": (20, 8)})
    after = io.clone(before)
    assert shapes_without_lookups(after) == 1
    assert [node.op_type for node in after.graph].count("Shape") == 1
    shape = next(node for node in after.graph if node.op_type == "Shape")
    assert shape.inputs[0].name == "ids"
    ids = np.random.default_rng(0).integers(0, 20, (3, 7))
    assert_exact_rewrite(before, after, {"ids": ids})


def test_a_lookup_read_only_for_its_shape_goes(make_model, assert_exact_rewrite):
    text = LOOKUP_READ_FOR_ITS_SHAPE.replace("scaled = Mul (rows, lengths)", "scaled = Mul (other, lengths)").replace(
        "g (int64[N, S] ids)", "g (int64[N, S] ids, float[N, S, 8] other)")
    before = make_model(text, {"table": (20, 8)})
    after = io.clone(before)
    assert shapes_without_lookups(after) == 1
    assert not [node for node in after.graph if node.op_type == "Gather" and node.inputs[0].name == "table"]
    feeds = {"ids": np.random.default_rng(0).integers(0, 20, (3, 7)), "other": np.ones((3, 7, 8), np.float32)}
    assert_exact_rewrite(before, after, feeds)


def test_a_partial_shape_is_left_alone(make_model):
    model = make_model(LOOKUP_READ_FOR_ITS_SHAPE.replace("Shape <start = 0>", "Shape <start = 1>"), {"table": (20, 8)})
    assert shapes_without_lookups(model) == 0
