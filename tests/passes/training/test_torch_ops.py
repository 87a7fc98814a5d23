"""ONNX ops in torch: each family computes what the ONNX reference and ONNX Runtime compute."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir
import pytest

torch = pytest.importorskip("torch")

from onnxcompress import runtime  # noqa: E402
from onnxcompress.errors import UsageError  # noqa: E402
from onnxcompress.passes.training.graph_module import GraphModule  # noqa: E402
from onnxcompress.passes.training.torch_ops import op, to_numpy  # noqa: E402

from ..pruning.conftest import run_everywhere, text_model  # noqa: E402


# The limits a node test may meet: types torch has no tensor or kernel for, random training modes, and the variants
# the view does not simulate. Anything else must compute what the reference computes.
DECLINED = re.compile(r"^cannot train this graph in PyTorch: (tensors of type \w+ are not supported|Cast to \w+ is not supported"
                      r"|.*not implemented for 'UInt(16|32|64)'|(Dropout|BatchNormalization) in training mode is not supported"
                      r"|Resize with (antialias when shrinking|keep_aspect_ratio_policy other than stretch) is not supported"
                      r"|MaxPool's Indices output is not supported|GatherND with batch_dims is not supported"
                      r"|(Quantize|Dequantize)Linear (with block_size|to torch.uint16).*)$")


def single_op_cases():
    """The onnx wheel's node tests of one op the view runs (not the copies expanded into other ops)."""
    from onnx.backend.test.case.node import collect_testcases

    def runs_one_op(case) -> bool:
        if case.name.endswith("_expanded") or "_expanded_" in case.name or len(case.model.graph.node) != 1:
            return False
        return op(next(iter(ir.serde.deserialize_model(case.model).graph))) is not None

    return [case for case in collect_testcases() if runs_one_op(case)]


@pytest.mark.parametrize("case", single_op_cases(), ids=lambda case: case.name.removeprefix("test_"))
def test_each_op_computes_what_the_onnx_reference_computes_or_declines_in_one_line(case):
    # Attention (3-D/4-D, GQA, caches, masks, windows, softcap), pools (asymmetric and wide pads, dilations,
    # ceil_mode), Resize (every mode and coordinate transform), and the rest, each against its expected outputs
    model = ir.serde.deserialize_model(case.model)
    for inputs, expected in case.data_sets:
        feeds = {value.name: as_array(array) for value, array in zip(model.graph.inputs, inputs) if array is not None}
        try:
            with torch.no_grad():
                got = GraphModule(model)(feeds)
        except UsageError as exc:
            assert DECLINED.match(str(exc)), str(exc)
            continue
        for value, want in zip(model.graph.outputs, expected):
            want = as_array(want)
            tolerance = 1e-4 if want.dtype in (np.float32, np.float64) else 1e-2
            np.testing.assert_allclose(to_numpy(got[value.name]).astype(np.float64), want.astype(np.float64), rtol=tolerance, atol=tolerance)


def as_array(value) -> np.ndarray:
    return onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


# A scikit-learn pipeline (StandardScaler, MLPClassifier) as skl2onnx writes it with zipmap=False: label and probabilities.
SKLEARN_MLP = """<ir_version: 8, opset_import: ["" : 17, "ai.onnx.ml" : 1]>
g (float[N,6] x) => (int64[N] label, float[N,3] probabilities) {
  scaled = ai.onnx.ml.Scaler<offset=[0.5, -1.0, 0.0, 2.0, 0.1, 0.0], scale=[2.0, 0.5, 1.0, 1.5, 3.0, 1.0]>(x)
  normal = ai.onnx.ml.Normalizer<norm="NORM">(scaled)
  h = MatMul(normal, w1)
  r = Relu(h)
  z = MatMul(r, w2)
  probabilities = Softmax<axis=1>(z)
  index = ArgMax<axis=1>(probabilities)
  picked = ai.onnx.ml.ArrayFeatureExtractor(classes, index)
  flat = Reshape(picked, minus_one)
  label = Cast<to=7>(flat)
}"""


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
def test_scikit_learn_pipelines_as_skl2onnx_writes_them_run_as_in_onnx_runtime(norm):
    model = text_model(SKLEARN_MLP.replace("NORM", norm), {"w1": (6, 8), "w2": (8, 3)})
    for name, array in (("classes", np.array([3, 5, 7], np.int64)), ("minus_one", np.array([-1], np.int64))):
        model.graph.register_initializer(ir.Value(name=name, const_value=ir.tensor(array, name=name)))
    feeds = {"x": np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)}
    expected = run_everywhere(model, feeds)
    with torch.no_grad():
        got = GraphModule(model)(feeds)
    np.testing.assert_allclose(got["probabilities"].numpy(), expected["probabilities"], rtol=1e-5, atol=1e-6)
    assert got["label"].tolist() == expected["label"].tolist() and set(expected["label"]) <= {3, 5, 7}


# PyTorch's dynamo export pools EfficientNet's last 7x7 map with a 640x640 kernel and ceil_mode; a kernel this wide
# would ask for hundreds of GB if its overhang were padded onto the input.
WIDE_POOL = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8, 7, 7] x) => (float[N, 8, 1, 1] y) {{
  y = {op}<kernel_shape = [65536, 65536], strides = [65536, 65536], ceil_mode = 1, pads = [0, 0, 0, 0]>(x)
}}"""


@pytest.mark.parametrize("pool", ["AveragePool", "MaxPool"])
def test_a_pool_wider_than_its_input_pools_the_input_as_onnx_runtime_does(pool):
    model = ir.from_onnx_text(WIDE_POOL.format(op=pool))
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 7)).astype(np.float32)
    with torch.no_grad():
        got = GraphModule(model)({"x": x})["y"].numpy()
    np.testing.assert_allclose(got, run_everywhere(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)


# com.microsoft ops as ONNX Runtime's transformer optimizer writes them: each against ONNX Runtime itself.
CONTRIB = """<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g ({inputs}) => ({outputs}) {{
  {body}
}}"""
HIDDEN, HEADS, BATCH, SEQUENCE = 16, 4, 3, 5
CONTRIB_CASES = {
    "skip-layer-norm": ("float[B, S, 16] x, float[B, S, 16] s", "float[B, S, 16] y, float[B, S, 16] total",
                        "y, mean, inv, total = com.microsoft.SkipLayerNormalization <epsilon = 1e-5> (x, s, gamma, beta, bias)",
                        {"gamma": (16,), "beta": (16,), "bias": (16,)}),
    "skip-layer-norm-plain": ("float[B, S, 16] x, float[B, S, 16] s", "float[B, S, 16] y",
                              "y = com.microsoft.SkipLayerNormalization (x, s, gamma)", {"gamma": (16,)}),
    "skip-rms-norm": ("float[B, S, 16] x, float[B, S, 16] s", "float[B, S, 16] y, float[B, S, 16] total",
                      "y, mean, inv, total = com.microsoft.SkipSimplifiedLayerNormalization (x, s, gamma, bias)",
                      {"gamma": (16,), "bias": (16,)}),
    "fused-matmul": ("float[B, 16, S] x", "float[B, S, 8] y",
                     "y = com.microsoft.FusedMatMul <transA = 1, transB = 1, alpha = 0.5> (x, w)", {"w": (8, 16)}),
    "gelus": ("float[B, S, 16] x", "float[B, S, 16] y",
              "a = com.microsoft.FastGelu (x, bias)\n  b = com.microsoft.BiasGelu (a, bias)\n  c = com.microsoft.Gelu (b)\n"
              "  d = com.microsoft.QuickGelu (c)\n  y = com.microsoft.FastGelu (d)",
              {"bias": (16,)}),
}


def _float_feeds(model: ir.Model) -> dict[str, np.ndarray]:
    """Random values for the model's float inputs, its symbolic dims at ``B`` = BATCH and ``S`` = SEQUENCE."""
    rng = np.random.default_rng(3)
    sizes = {"B": BATCH, "S": SEQUENCE}
    return {value.name: rng.standard_normal([sizes.get(str(d), d) for d in value.shape]).astype(np.float32)
            for value in model.graph.inputs if value.dtype == ir.DataType.FLOAT}


def _matches_onnx_runtime(model: ir.Model, feeds: dict[str, np.ndarray]) -> None:
    expected = run_everywhere(model, feeds)
    with torch.no_grad():
        got = GraphModule(model)(feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(as_array(got[name]), value, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("case", CONTRIB_CASES, ids=str)
def test_onnxruntime_fused_ops_compute_what_onnx_runtime_computes(case):
    inputs, outputs, body, weights = CONTRIB_CASES[case]
    model = text_model(CONTRIB.format(inputs=inputs, outputs=outputs, body=body), weights)
    _matches_onnx_runtime(model, _float_feeds(model))


ATTENTION_MASKS = {  # mask_index forms ORT's Attention takes, each hiding some keys of some samples
    "none": None,
    "lengths": np.array([5, 3, 1], np.int32),
    "ends-and-starts": np.array([5, 4, 3, 0, 1, 2], np.int32),
    "raw-2d": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0]], np.int32),
    "raw-3d": (np.random.default_rng(4).random((3, 5, 5)) > 0.3).astype(np.int32),
}


@pytest.mark.parametrize("mask", ATTENTION_MASKS, ids=str)
@pytest.mark.parametrize("variant", ["plain", "causal", "sizes-scale-bias"], ids=str)
def test_onnxruntime_attention_computes_what_onnx_runtime_computes(mask, variant):
    attributes = {"plain": "num_heads = 4", "causal": "num_heads = 4, unidirectional = 1",
                  "sizes-scale-bias": "num_heads = 4, qkv_hidden_sizes = [16, 16, 8], scale = 0.3"}[variant]
    width = 40 if variant == "sizes-scale-bias" else 48
    masked = ATTENTION_MASKS[mask]
    mask_input = "" if masked is None else f", int32[{','.join(str(d) for d in masked.shape)}] m"
    extra = ", float[1, 4, 5, 5] ab" if variant == "sizes-scale-bias" else ""
    arguments = f"x, w, b, {'m' if masked is not None else ''}{', , ab' if extra else ''}".rstrip(", ")  # ab: input 5
    body = f"y = com.microsoft.Attention <{attributes}> ({arguments})"
    model = text_model(CONTRIB.format(inputs=f"float[B, S, 16] x{mask_input}{extra}", outputs="float[B, S, Y] y", body=body),
                       {"w": (HIDDEN, width), "b": (width,)})
    feeds = _float_feeds(model)
    if masked is not None:
        feeds["m"] = masked
    _matches_onnx_runtime(model, feeds)


@pytest.mark.parametrize("mask", ["right-padded", "left-padded", "none"], ids=str)
def test_onnxruntime_embedding_layer_norm_computes_what_onnx_runtime_computes(mask):
    masks = {"right-padded": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int32),
             "left-padded": np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], np.int32)}
    with_mask = mask in masks
    text = CONTRIB.format(
        inputs="int32[B, S] ids, int32[B, S] segments" + (", int32[B, S] m" if with_mask else ""),
        outputs="float[B, S, 16] y" + (", int32[B] index" if with_mask else "") + ", float[B, S, 16] total",
        body=("y, index, total = " if with_mask else "y, , total = ")
        + f"com.microsoft.EmbedLayerNormalization <epsilon = 1e-5> (ids, segments, words, positions, kinds, gamma, beta{', m' if with_mask else ''})")
    model = text_model(text, {"words": (20, HIDDEN), "positions": (8, HIDDEN), "kinds": (2, HIDDEN), "gamma": (HIDDEN,), "beta": (HIDDEN,)})
    rng = np.random.default_rng(6)
    feeds = {"ids": rng.integers(0, 20, (BATCH, SEQUENCE)).astype(np.int32), "segments": rng.integers(0, 2, (BATCH, SEQUENCE)).astype(np.int32)}
    if with_mask:
        feeds["m"] = masks[mask]
    _matches_onnx_runtime(model, feeds)


def test_onnxruntimes_simplified_layer_norm_computes_what_onnx_runtime_computes():
    """ORT's RMSNorm, which its optimizer writes in the default domain (onnx's checker knows no such op there)."""
    text = CONTRIB.format(inputs="float[B, S, 16] x", outputs="float[B, S, 16] y",
                          body="y = SimplifiedLayerNormalization <epsilon = 1e-6> (x, gamma)")
    model = text_model(text, {"gamma": (HIDDEN,)})
    feeds = _float_feeds(model)
    with torch.no_grad():
        got = GraphModule(model)(feeds)["y"].numpy()
    for level in ("disable", "all"):
        np.testing.assert_allclose(got, runtime.run(model, feeds, optimization=level)["y"], rtol=1e-5, atol=1e-5)
