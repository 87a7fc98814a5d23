"""The ORT wrapper: sessions from IR or files, runs, feeds ORT has no numpy type for, shape pins."""

from __future__ import annotations

import re
import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from onnxcompress import runtime
from onnxcompress.errors import UsageError


def test_run_from_ir_and_from_file_agree_at_every_level(mlp_model, mlp_path):
    feeds = runtime.synthetic_inputs(mlp_model, batch=3)
    assert feeds["x"].shape == (3, 16) and feeds["x"].dtype == np.float32
    expected = runtime.run(mlp_model, feeds, optimization="disable")["y"]
    for level in runtime.OPTIMIZATION_LEVELS:
        for source in (mlp_path, mlp_path.read_bytes()):  # a file, and a serialized model as trials ship them
            got = runtime.run(runtime.session(source, optimization=level), feeds)["y"]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="cannot load the model"):
        runtime.session(b"not a model")


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


def test_a_mask_broadcast_over_the_queries_of_an_attention_is_named_not_blamed_on_the_input_sizes():
    # what torch.onnx.export(dynamo=True, opset_version=23) writes for a key-padding mask: [batch, heads, 1, keys]
    model = onnx.parser.parse_model("""<ir_version: 10, opset_import: ["" : 23]>
        g (float[N,2,S,4] q, float[N,1,1,S] mask) => (float[N,2,S,4] y) { y = Attention(q, q, q, mask) }""")
    for feeds in (runtime.synthetic_inputs(ir.serde.deserialize_model(model)),
                  {"q": np.ones((1, 2, 3, 4), np.float32), "mask": np.zeros((1, 1, 1, 3), np.float32)}):
        try:
            ran = runtime.run(ir.serde.deserialize_model(model), feeds)
        except UsageError as exc:  # ONNX Runtime 1.32
            assert re.match(r"the model cannot run in ONNX Runtime: its CPU Attention kernel does not broadcast a mask .* opset 18", str(exc))
        else:  # a later ONNX Runtime that broadcasts the mask: nothing left to explain
            assert ran["y"].shape == feeds["q"].shape


def test_bfloat16_and_float8_arrays_are_fed_as_ort_values_and_others_as_they_are():
    plain = np.ones(2, np.float32)
    fed = runtime.ort_feeds({"b": np.ones(2, ml_dtypes.bfloat16), "f8": np.ones(2, ml_dtypes.float8_e4m3fn), "x": plain})
    assert isinstance(fed["b"], ort.OrtValue) and fed["b"].data_type() == "tensor(bfloat16)"
    assert isinstance(fed["f8"], ort.OrtValue) and fed["f8"].data_type() == "tensor(float8e4m3fn)"
    assert fed["x"] is plain


@pytest.mark.parametrize("threads", [0, runtime.MAX_THREADS + 1, 10_000])
def test_threads_outside_the_machines_bound_are_refused_before_a_session(mlp_model, threads):
    with pytest.raises(UsageError, match=rf"^threads={threads} is outside 1\.\.{runtime.MAX_THREADS} \(four per core"):
        runtime.session(mlp_model, threads=threads)


def test_the_most_threads_allowed_still_run(mlp_model):
    assert runtime.session(mlp_model, threads=runtime.MAX_THREADS).get_outputs()


def test_a_fed_initializer_backed_input_overrides_its_default():
    """ORT lists such inputs apart from the others (overridable initializers); a value the caller feeds for one, as
    an ``--inputs`` file may, was dropped and the default used instead."""
    import onnx_ir as ir

    model = ir.from_onnx_text("""<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x, float[2] shift) => (float[2] y) <float[2] shift = {1, 1}> { y = Add(x, shift) }""")
    x = np.zeros(2, np.float32)
    assert runtime.run(model, {"x": x})["y"].tolist() == [1.0, 1.0]
    assert runtime.run(model, {"x": x, "shift": np.full(2, 5.0, np.float32)})["y"].tolist() == [5.0, 5.0]
