"""The ORT wrapper: sessions from IR or files, synthetic inputs from the signature, shape pins."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import runtime
from onnxcompress.errors import UsageError

TOKENS_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
emb (int64[B, S] input_ids, int64[B, S] attention_mask, int64[B, S] token_type_ids) => (float[B, S, 4] y)
    <float[50, 4] table = {0.0}> {
  i32 = Cast <to = 6> (input_ids)
  y = Gather(table, i32)
}
"""


def test_run_from_ir_and_from_file_agree_at_every_level(mlp_model, mlp_path):
    feeds = runtime.synthetic_inputs(mlp_model, batch=3)
    assert feeds["x"].shape == (3, 16) and feeds["x"].dtype == np.float32
    expected = runtime.run(mlp_model, feeds, optimization="disable")["y"]
    for level in runtime.OPTIMIZATION_LEVELS:
        got = runtime.run(runtime.session(mlp_path, optimization=level), feeds)["y"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_synthetic_token_inputs_stay_in_the_vocabulary():
    feeds = runtime.synthetic_inputs(ir.from_onnx_text(TOKENS_TEXT), batch=2, shapes={"input_ids": (2, 5)}, seed=1)
    assert feeds["input_ids"].shape == (2, 5) and feeds["input_ids"].max() < 50  # through the Cast
    assert feeds["attention_mask"].shape == (2, runtime.DEFAULT_DYNAMIC_DIM) and feeds["attention_mask"].min() == 1
    assert not feeds["token_type_ids"].any()


def test_synthetic_inputs_are_seeded(mlp_model):
    a, b = (runtime.synthetic_inputs(mlp_model, seed=s)["x"] for s in (0, 0))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, runtime.synthetic_inputs(mlp_model, seed=1)["x"])


def test_unknown_pinned_input_is_a_usage_error(mlp_model):
    with pytest.raises(UsageError, match="unknown inputs \\['z'\\]"):
        runtime.synthetic_inputs(mlp_model, shapes={"z": (1,)})


@pytest.mark.parametrize("bad", ["x", "x:1,a", ":3"])
def test_bad_input_shape_pins(bad):
    with pytest.raises(UsageError, match="bad --input-shape"):
        runtime.parse_input_shapes([bad])


def test_input_shape_pins_parse():
    assert runtime.parse_input_shapes(["a:b:1,2", "x:4"]) == {"a:b": (1, 2), "x": (4,)}


def test_invalid_model_and_failing_run_are_one_line_errors(mlp_model):
    with pytest.raises(UsageError, match="failed to run"):
        runtime.run(mlp_model, {"x": np.ones((2, 7), np.float32)})
    mlp_model.graph.node(0).op_type = "NoSuchOp"
    with pytest.raises(UsageError, match="cannot load the model"):
        runtime.session(mlp_model)
