"""The ORT wrapper: sessions from IR or files, runs, shape pins, and what a failed run on synthetic inputs says."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import runtime
from onnxcompress.errors import UsageError

def test_run_from_ir_and_from_file_agree_at_every_level(mlp_model, mlp_path):
    feeds = runtime.synthetic_inputs(mlp_model, batch=3)
    assert feeds["x"].shape == (3, 16) and feeds["x"].dtype == np.float32
    expected = runtime.run(mlp_model, feeds, optimization="disable")["y"]
    for level in runtime.OPTIMIZATION_LEVELS:
        got = runtime.run(runtime.session(mlp_path, optimization=level), feeds)["y"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


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
