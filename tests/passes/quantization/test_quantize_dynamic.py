"""quantize-dynamic: after our own ``fuse``, on ORT contrib ops, and what it refuses."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnxruntime.quantization import quantize_dynamic

from onnxcompress import checks, fidelity, runtime
from onnxcompress.errors import UsageError
from onnxcompress.passes import Fuse, QuantizeDynamic
from onnxcompress.passes.quantization.support.ort_bridge import Selection
from onnxcompress.passes.quantization.support.selection import fallback_candidates

from .conftest import with_weights

# A transformer feed-forward block written unfused: MatMul + bias Add, LayerNorm by hand, erf GELU.
FFN_TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
ffn (float[N, 6, 16] x) => (float[N, 6, 16] y)
<float[16, 32] w1 = {0.0}, float[32] b1 = {0.0}, float[32, 16] w2 = {0.0}, float[16] b2 = {0.0}, float[16] g = {0.0}, float[16] beta = {0.0}>
{
    m1 = MatMul (x, w1)
    h = Add (m1, b1)
    s2 = Constant <value = float {1.4142135}> ()
    hs = Div (h, s2)
    e = Erf (hs)
    one = Constant <value = float {1.0}> ()
    e1 = Add (e, one)
    he = Mul (h, e1)
    half = Constant <value = float {0.5}> ()
    act = Mul (he, half)
    m2 = MatMul (act, w2)
    z = Add (m2, b2)
    axes = Constant <value = int64[1] {-1}> ()
    mean = ReduceMean (z, axes)
    d = Sub (z, mean)
    two = Constant <value = float {2.0}> ()
    sq = Pow (d, two)
    var = ReduceMean (sq, axes)
    eps = Constant <value = float {1e-5}> ()
    ve = Add (var, eps)
    sd = Sqrt (ve)
    n = Div (d, sd)
    ng = Mul (n, g)
    y = Add (ng, beta)
}
"""

# What ORT's transformer optimizer leaves: a contrib op (com.microsoft Gelu) feeding a MatMul.
CONTRIB_TEXT = """
<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[N, 16] x) => (float[N, 8] y)
<float[16, 16] wa = {0.0}, float[16, 8] wb = {0.0}>
{
    h = MatMul (x, wa)
    a = com.microsoft.Gelu (h)
    m = MatMul (a, wb)
    y = Relu (m)
}
"""


def feeds(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(4).normal(size=shape).astype(np.float32)}


def test_dynamic_after_our_fuse_quantizes_the_matmuls_and_runs() -> None:
    model = with_weights(FFN_TEXT)
    inputs = feeds((2, 6, 16))
    reference = runtime.run(model, inputs)
    fuse = Fuse()
    fuse(model)
    assert {"LayerNormalization", "Gelu"} <= {n.op_type for n in model.graph}
    QuantizeDynamic()(model)

    ops = [n.op_type for n in model.graph]
    assert "MatMul" not in ops and "Gemm" not in ops
    assert ops.count("DynamicQuantizeLinear") == 2
    assert checks.graph_problems(model) == []
    for optimization in ("disable", "all"):
        assert fidelity.compare(reference, runtime.run(model, inputs, optimization=optimization)).cosine > 0.99


def test_dynamic_handles_ort_contrib_ops_where_quantize_dynamic_crashes(tmp_path) -> None:
    model = with_weights(CONTRIB_TEXT)
    proto = ir.serde.serialize_model(model)
    with pytest.raises(RuntimeError, match="Unable to find data type"):
        quantize_dynamic(proto, tmp_path / "ort.onnx", per_channel=True)
    inputs = feeds((3, 16))
    reference = runtime.run(model, inputs)
    QuantizeDynamic()(model)
    assert sum(n.op_type == "MatMulInteger" for n in model.graph) == 2
    for optimization in ("disable", "all"):
        assert fidelity.compare(reference, runtime.run(model, inputs, optimization=optimization)).cosine > 0.99


def test_already_quantized_model_is_refused_in_one_line(mlp) -> None:
    QuantizeDynamic()(mlp)
    with pytest.raises(UsageError, match="already quantized") as info:
        QuantizeDynamic()(mlp)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"op_types": ["Softmax"]}, r"quantize-dynamic: op_types \['Softmax'\] cannot be quantized here"),
    ({"weight_type": "int4"}, "quantize-dynamic: weight_type must be one of uint8, int8, None"),
    ({"activation_scales": "static"}, "quantize-dynamic: activation_scales must be one of dynamic, calibrated"),
    ({"activation_scales": "calibrated", "method": "magic"}, "quantize-dynamic: method must be one of minmax"),
    ({"max_drop": 2.0}, r"quantize-dynamic: max_drop must be in \[0, 1\]"),
    ({"max_fallback": -3}, "quantize-dynamic: max_fallback must be >= 0"),
])
def test_bad_options_are_refused_when_built(options, message) -> None:
    with pytest.raises(UsageError, match=message):
        QuantizeDynamic(**options)


GEMM_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 16] x) => (float[N, 8] y)
<float[8, 16] w = {0.0}, float[8] b = {0.0}>
{
    y = Gemm <transB = 1> (x, w, b)
}
"""


def test_gemm_is_split_so_it_can_be_quantized() -> None:
    model = with_weights(GEMM_TEXT)
    inputs = feeds((5, 16))
    reference = runtime.run(model, inputs)
    run = QuantizeDynamic()(model)
    ops = [n.op_type for n in model.graph]
    assert "Gemm" not in ops and "MatMulInteger" in ops
    assert any("Gemm split" in line for line in run.notes)
    assert checks.graph_problems(model) == []
    for optimization in ("disable", "all"):
        assert fidelity.compare(reference, runtime.run(model, inputs, optimization=optimization)).cosine > 0.99


# A recurrent classifier as PyTorch and tf2onnx export one: an LSTM over the sequence, its last hidden state read by a head.
LSTM_TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
rnn (float[T, N, 16] x) => (float[N, 10] y)
<float[1, 128, 16] w = {0.0}, float[1, 128, 32] r = {0.0}, float[1, 256] b = {0.0}, float[32, 10] head = {0.0}>
{
    seq, last = LSTM <hidden_size = 32> (x, w, r, b)
    axes = Constant <value = int64[1] {0}> ()
    h = Squeeze (last, axes)
    y = MatMul (h, head)
}
"""


def test_dynamic_quantizes_an_lstms_weights_by_default() -> None:
    # an LSTM's weights were left in float: a 2-layer LSTM of 512 from PyTorch ran as fast and as large as before
    model = with_weights(LSTM_TEXT)
    x = feeds((12, 3, 16))
    reference = runtime.run(model, x)
    lstm = next(node.name for node in model.graph if node.op_type == "LSTM")
    assert lstm in fallback_candidates(ir.serde.serialize_model(model), Selection(QuantizeDynamic().default_op_types()))
    QuantizeDynamic()(model)
    ops = [n.op_type for n in model.graph]
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert {model.graph.initializers[name].dtype for name in ("w_quantized", "r_quantized")} == {ir.DataType.INT8}
    for optimization in ("disable", "all"):
        assert fidelity.compare(reference, runtime.run(model, x, optimization=optimization)).cosine > 0.99
    # its recurrent weight computed in the graph (PyTorch's dynamo export reorders the gates): ORT leaves it in float
    computed = with_weights(LSTM_TEXT.replace("(x, w, r, b)", "(x, w, rr, b)").replace(
        "    axes =", "    one = Constant <value = float {1.0}> ()\n    rr = Mul (r, one)\n    axes =", 1))
    assert fallback_candidates(ir.serde.serialize_model(computed), Selection(["LSTM"])) == []
    run = QuantizeDynamic()(computed)
    assert "LSTM" in [n.op_type for n in computed.graph] and any("computed in the graph" in line for line in run.notes)


# Optimum's merged decoders (decoder_model_merged.onnx): one If choosing the first step or a cached one, each
# branch reading the outer graph's weights; the main graph holds nothing to quantize.
MERGED_TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
merged (bool use_cache_branch, float[N, 4, 16] x) => (float[N, 4, 16] y)
<float[16, 32] w1 = {0.0}, float[32, 16] w2 = {0.0}>
{
    y = If (use_cache_branch) <
        then_branch = cached () => (float[N, 4, 16] a) {
            h = MatMul (x, w1)
            r = Relu (h)
            a = MatMul (r, w2)
        },
        else_branch = first () => (float[N, 4, 16] b) {
            h = MatMul (x, w1)
            t = Tanh (h)
            b = MatMul (t, w2)
        }
    >
}
"""


def test_dynamic_quantizes_the_weights_both_branches_of_a_merged_decoder_read() -> None:
    model = with_weights(MERGED_TEXT)
    x = feeds((2, 4, 16))["x"]
    references = {branch: runtime.run(model, {"use_cache_branch": np.array(branch), "x": x}) for branch in (True, False)}
    QuantizeDynamic()(model)
    if_node = next(node for node in model.graph if node.op_type == "If")
    for branch, name in ((True, "then_branch"), (False, "else_branch")):
        ops = [node.op_type for node in if_node.attributes[name].value]
        assert ops.count("MatMulInteger") == 2 and "MatMul" not in ops
        for optimization in ("disable", "all"):
            got = runtime.run(model, {"use_cache_branch": np.array(branch), "x": x}, optimization=optimization)
            assert fidelity.compare(references[branch], got).cosine > 0.99


# ``fuse:opset=23`` on Whisper's merged decoder put ONNX's own Attention in both branches; ORT's quantizer turned
# them into the contrib QAttention (it keys on the op type alone), and the model no longer loaded ("Required
# attribute 'num_heads' is missing"): the main graph's standard Attention nodes were kept out of its reach, not a subgraph's.
MERGED_ATTENTION_TEXT = """
<ir_version: 10, opset_import: ["" : 23]>
merged (bool use_cache_branch, float[N, 2, 4, 8] x) => (float[N, 2, 4, 8] y)
<float[8, 8] wq = {0.0}, float[8, 8] wk = {0.0}>
{
    y = If (use_cache_branch) <
        then_branch = cached () => (float[N, 2, 4, 8] a) {
            q = MatMul (x, wq)
            k = MatMul (x, wk)
            a = Attention (q, k, x)
        },
        else_branch = first () => (float[N, 2, 4, 8] b) {
            q2 = MatMul (x, wq)
            b = Attention (q2, x, x)
        }
    >
}
"""


def test_dynamic_leaves_standard_attention_inside_a_merged_decoders_branches_to_onnx() -> None:
    model = with_weights(MERGED_ATTENTION_TEXT)
    x = np.random.default_rng(4).normal(size=(2, 2, 4, 8)).astype(np.float32)
    references = {branch: runtime.run(model, {"use_cache_branch": np.array(branch), "x": x}) for branch in (True, False)}
    QuantizeDynamic()(model)
    if_node = next(node for node in model.graph if node.op_type == "If")
    for branch, name in ((True, "then_branch"), (False, "else_branch")):
        nodes = list(if_node.attributes[name].value)
        assert [(n.domain, n.op_type) for n in nodes if "Attention" in n.op_type] == [("", "Attention")]
        assert "MatMulInteger" in [n.op_type for n in nodes]
        for optimization in ("disable", "all"):
            got = runtime.run(model, {"use_cache_branch": np.array(branch), "x": x}, optimization=optimization)
            assert fidelity.compare(references[branch], got).cosine > 0.99
