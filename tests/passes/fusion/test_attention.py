"""attention family: head split → scores → mask → Softmax → weighted sum → merge becomes ONNX ``Attention`` (opset 23+)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.errors import UsageError
from onnxcompress.passes import Fuse, QuantizeDynamic

ATTENTION = """
<ir_version: 10, opset_import: ["" : {opset}]>
g (float[2, 5, 8] q, float[2, 5, 8] k, float[2, 5, 8] v, float[{mask_shape}] mask) => (float[2, 5, 8] y)
  <int64[4] split = {{0, 0, 2, 4}}, int64[3] merge = {{0, 0, -1}}, float factor = {{{factor}}}> {{
    qr = Reshape(q, split)
    qh = Transpose<perm = [0, 2, 1, 3]>(qr)
    kr = Reshape(k, split)
    kh = Transpose<perm = [0, 2, 3, 1]>(kr)
    vr = Reshape(v, split)
    vh = Transpose<perm = [0, 2, 1, 3]>(vr)
    scores = MatMul(qh, kh)
    scaled = {scale_op}(scores, factor)
    masked = Add(scaled, mask)
    probs = Softmax<axis = -1>(masked)
    weighted = MatMul(probs, vh)
    heads = Transpose<perm = [0, 2, 1, 3]>(weighted)
    y = Reshape(heads, merge)
}}
"""


def attention_text(opset: int = 23, mask_shape: str = "2, 1, 1, 5", scale_op: str = "Div", factor: float = 2.0) -> str:
    return ATTENTION.format(opset=opset, mask_shape=mask_shape, scale_op=scale_op, factor=factor)


def ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


@pytest.mark.parametrize("scale_op, factor, scale", [("Div", 2.0, 0.5), ("Mul", 0.25, 0.25)])
def test_masked_attention_becomes_one_attention_op(fused, assert_exact_rewrite, scale_op, factor, scale):
    before, after, fuse = fused(attention_text(scale_op=scale_op, factor=factor))
    assert fuse.details["attention"] == 1
    attention = next(node for node in after.graph if node.op_type == "Attention")
    assert attention.attributes.get_int("q_num_heads") == attention.attributes.get_int("kv_num_heads") == 2
    assert attention.attributes.get_float("scale") == pytest.approx(scale)
    assert {"MatMul", "Softmax", "Transpose", "Reshape"}.isdisjoint(ops(after))  # the [0, 0, -1] merge is the op's own shape
    assert "Expand" in ops(after)  # ORT's kernel needs the [2, 1, 1, 5] mask spelled out per query
    assert_exact_rewrite(before, after)


def test_blocks_with_queries_of_one_length_share_one_expanded_mask(fused, assert_exact_rewrite):
    header, body = attention_text().split("{\n", 1)
    body = body.rsplit("}", 1)[0]
    second = body.replace("(q,", "(y,")  # the second block's queries are the first block's output
    for name in ("qr", "qh", "kr", "kh", "vr", "vh", "scores", "scaled", "masked", "probs", "weighted", "heads"):
        second = second.replace(f"{name} =", f"{name}2 =").replace(f"({name})", f"({name}2)").replace(f"({name},", f"({name}2,") \
            .replace(f", {name})", f", {name}2)")
    second = second.replace("y = Reshape", "out = Reshape")
    text = header.replace("float[2, 5, 8] y)", "float[2, 5, 8] out)") + "{\n" + body + second + "}\n"
    before, after, fuse = fused(text)
    assert fuse.details["attention"] == 2
    assert ops(after).count("Expand") == 1
    assert_exact_rewrite(before, after)


def test_mask_with_a_query_axis_is_passed_as_it_is(fused, assert_exact_rewrite):
    before, after, _ = fused(attention_text(mask_shape="2, 1, 5, 5"))
    assert "Attention" in ops(after) and "Expand" not in ops(after)
    assert_exact_rewrite(before, after)


def test_scale_read_from_an_input_is_left_alone(fused, assert_exact_rewrite):
    text = attention_text().replace("float[2, 5, 8] v,", "float[2, 5, 8] v, float factor,").replace(", float factor = {2.0}", "")
    before, after, fuse = fused(text)
    assert fuse.details["attention"] == 0 and "Attention" not in ops(after)
    assert_exact_rewrite(before, after)


def test_below_opset_23_attention_is_not_tried(fused):
    _, after, fuse = fused(attention_text(opset=21))
    assert "Attention" not in ops(after)
    assert any("attention: not tried, needs opset >= 23 (model has 21; fuse:opset=23 converts it)" in note for note in fuse.notes)


def test_a_graph_without_softmax_gets_no_attention_note(fused):
    _, _, fuse = fused('<ir_version: 10, opset_import: ["" : 17]>\ng (float[2, 3] x) => (float[2, 3] y) {\n    y = Relu(x)\n}\n')
    assert fuse.details["attention"] == 0 and not any("attention" in note for note in fuse.notes)


def test_opset_option_converts_an_older_export_and_then_fuses(rewrite_text, assert_exact_rewrite):
    before, after, fuse = rewrite_text(Fuse(opset=23), attention_text(opset=17))
    assert io.default_opset(after) == 23 and fuse.details["opset"] == {"from": 17, "to": 23}
    assert "Attention" in ops(after)
    assert_exact_rewrite(before, after)


def test_opset_option_never_lowers_the_opset(rewrite_text):
    _, after, fuse = rewrite_text(Fuse(opset=13), attention_text(opset=23))
    assert io.default_opset(after) == 23 and "opset" not in fuse.details


@pytest.mark.parametrize("opset", [0, 999])
def test_opset_out_of_range_is_a_usage_error(opset):
    with pytest.raises(UsageError, match="out of range"):
        Fuse(opset=opset)


def projected_attention_text(rng: np.random.Generator) -> str:
    """Self-attention with Q/K/V projections from one input, weights inline."""
    weights = ", ".join(
        f"float[8, 8] w{name} = {{{', '.join(f'{x:.4f}' for x in rng.standard_normal(64) * 0.3)}}}" for name in "qkv"
    )
    body = attention_text().split("{\n", 1)[1]
    header = (
        '<ir_version: 10, opset_import: ["" : 23]>\n'
        "g (float[2, 5, 8] x, float[2, 1, 1, 5] mask) => (float[2, 5, 8] y)\n"
        f"  <int64[4] split = {{0, 0, 2, 4}}, int64[3] merge = {{0, 0, -1}}, float factor = {{2.0}}, {weights}> {{\n"
        "    q = MatMul(x, wq)\n    k = MatMul(x, wk)\n    v = MatMul(x, wv)\n"
    )
    return header + body


def test_fused_attention_is_quantized_around_not_into_ort_qattention(fused):
    """ORT's quantizers take any op named Attention for their contrib one; the projections must still be
    quantized and the standard op kept, or ORT cannot load the model."""
    before, after, _ = fused(projected_attention_text(np.random.default_rng(0)))
    QuantizeDynamic()(after)
    assert "Attention" in ops(after) and "QAttention" not in ops(after)
    assert ops(after).count("DynamicQuantizeMatMul") + ops(after).count("MatMulInteger") >= 3
    feeds = runtime.synthetic_inputs(before)
    expected = runtime.run(before, feeds)["y"]
    for level in ("disable", "all"):
        got = runtime.run(after, feeds, optimization=level)["y"]
        assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


HEADS = """
<ir_version: 10, opset_import: ["" : 23]>
g (float[2, 4, 5, 8] q, {k_decl}, float[2, 4, 5, 8] v, float[2, 4, 1, 5] mask) => (float[2, 4, 5, 8] y)
  <int64[1] minus_one = {{-1}}, int64[1] minus_two = {{-2}}, int64[1] big = {{9223372036854775807}},
   int64[1] small = {{-9223372036854775808}}, float one = {{1.0}}, float[1] root = {{0.5}}> {{
{keys}
    qs = Mul(q, {factor})
    ks = Mul(kt, {factor})
    scores = MatMul(qs, ks)
    masked = Add(scores, mask)
    probs = Softmax<axis = -1>(masked)
    y = MatMul(probs, v)
}}
"""
# PyTorch's legacy export: sqrt(1 / sqrt(H)) on Q and on Kᵀ, H read from Q's shape at run time
HEAD_SIZE_ROOT = """
    q_shape = Shape(q)
    h = Slice(q_shape, minus_one, big)
    h_float = Cast<to = 1>(h)
    h_root = Sqrt(h_float)
    inverse = Div(one, h_root)
    factor = Sqrt(inverse)
"""
# the dynamo export: Kᵀ by flattening the leading axes, swapping, and unflattening with K's own dims
UNFLATTENED_KEYS = """
    shape = Shape(k)
    last = Slice(shape, minus_one, big)
    second = Slice(shape, minus_two, minus_one)
    lead = Slice(shape, small, minus_two)
    flat_shape = Concat<axis = 0>(minus_one, second, last)
    flat = Reshape(k, flat_shape)
    swapped = Transpose<perm = [0, 2, 1]>(flat)
    back_shape = Concat<axis = 0>(lead, {back})
    kt = Reshape(swapped, back_shape)
"""


def heads_text(keys: str, factor: str, k_decl: str = "float[2, 4, 5, 8] k") -> str:
    return HEADS.format(k_decl=k_decl, keys=keys, factor=factor)


def attention_nodes(model: ir.Model) -> list[ir.Node]:
    return [node for node in model.graph if node.op_type == "Attention"]


def test_pytorch_legacy_heads_fuse_with_the_default_scale(fused, assert_exact_rewrite):
    """Kᵀ by a Transpose, sqrt(1/sqrt(H)) on each side: the op's default scale 1/sqrt(H) stands."""
    keys = "    kt = Transpose<perm = [0, 1, 3, 2]>(k)" + HEAD_SIZE_ROOT
    before, after, fuse = fused(heads_text(keys, "factor"))
    assert fuse.details["attention"] == 1
    (attention,) = attention_nodes(after)
    assert "scale" not in attention.attributes
    assert {"MatMul", "Softmax", "Sqrt", "Cast", "Transpose"}.isdisjoint(ops(after))  # the scale chain and Kᵀ are gone
    assert_exact_rewrite(before, after)


def test_dynamo_unflattened_keys_fuse_with_the_product_of_both_scales(fused, assert_exact_rewrite):
    before, after, fuse = fused(heads_text(UNFLATTENED_KEYS.format(back="last, second"), "root"))
    (attention,) = attention_nodes(after)
    assert attention.inputs[1].name == "k"  # K itself, the flatten/transpose/unflatten gone
    assert attention.attributes.get_float("scale") == pytest.approx(0.25)
    assert {"MatMul", "Softmax"}.isdisjoint(ops(after))
    assert_exact_rewrite(before, after)


def test_an_unflatten_that_does_not_swap_the_last_axes_is_not_fused(fused):
    """Unflattening to [B, N, S, H] after the swap is a reshuffle, not Kᵀ: left alone."""
    before, after, fuse = fused(heads_text(UNFLATTENED_KEYS.format(back="second, last"), "root"))
    assert fuse.details["attention"] == 0 and ops(after) == ops(before)


def test_keys_split_with_their_transpose_folded_in_get_their_own_perm(fused, assert_exact_rewrite):
    """transformers' dynamo export: Kᵀ = Transpose(K as [B, S, N, H], [0, 2, 3, 1]) becomes K's [0, 2, 1, 3] split."""
    before, after, _ = fused(heads_text("    kt = Transpose<perm = [0, 2, 3, 1]>(k)", "root", k_decl="float[2, 5, 4, 8] k"))
    (attention,) = attention_nodes(after)
    split = attention.inputs[1].producer()
    assert split.op_type == "Transpose" and list(split.attributes.get_ints("perm")) == [0, 2, 1, 3]
    assert_exact_rewrite(before, after)


def test_a_scale_from_another_tensors_shape_is_left_alone(fused, assert_exact_rewrite):
    keys = "    kt = Transpose<perm = [0, 1, 3, 2]>(k)" + HEAD_SIZE_ROOT.replace("Shape(q)", "Shape(v)")
    before, after, fuse = fused(heads_text(keys, "factor").replace("float[2, 4, 5, 8] v", "float[2, 4, 5, 16] v")
                                .replace("float[2, 4, 5, 8] y", "float[2, 4, 5, 16] y"))
    assert fuse.details["attention"] == 0
    assert_exact_rewrite(before, after)


# onnx's test_flexattention_score_mod after fold-constants: a score_mod that adds a scalar to the scores (at
# opset 26, where ORT reads a key-broadcast mask wrongly without an error; at 23 it refuses it)
SCORE_BIAS = """
<ir_version: 10, opset_import: ["" : 26]>
g (float[1, 2, 3, 4] q, float[1, 2, 3, 4] k, float[1, 2, 3, 4] v) => (float[1, 2, 3, 4] y)
  <float root = {0.70710677}, float bias = {0.5}> {
    qs = Mul(q, root)
    ks = Mul(k, root)
    kt = Transpose<perm = [0, 1, 3, 2]>(ks)
    scores = MatMul(qs, kt)
    biased = Add(scores, bias)
    probs = Softmax<axis = 3>(biased)
    y = MatMul(probs, v)
}
"""


@pytest.mark.parametrize("text", [
    SCORE_BIAS,
    heads_text("    kt = Transpose<perm = [0, 1, 3, 2]>(k)", "root").replace("float[2, 4, 1, 5] mask", "float[2, 4, 5, 1] mask"),
    attention_text(mask_shape="2, 1, 5, 1"),
    attention_text(mask_shape="1"),
], ids=["scalar-score-bias", "heads-key-broadcast", "split-key-broadcast", "split-one-value"])
def test_a_mask_broadcast_along_the_keys_is_spelled_out_for_ort(fused, assert_exact_rewrite, text):
    """ORT's kernel reads a mask whose key axis is broadcast wrongly or not at all: it is expanded to the key length."""
    before, after, fuse = fused(text)
    assert fuse.details["attention"] == 1
    (attention,) = attention_nodes(after)
    assert attention.inputs[3].producer().op_type == "Expand"
    assert_exact_rewrite(before, after)


def test_a_mask_that_broadcasts_the_scores_up_is_left_alone(fused, assert_exact_rewrite):
    """Scores of one batch plus a mask of two are two batches: the fused op would output one."""
    text = heads_text("    kt = Transpose<perm = [0, 1, 3, 2]>(k)", "root").replace("float[2, 4, 5, 8] q", "float[1, 4, 5, 8] q") \
        .replace("float[2, 4, 5, 8] k", "float[1, 4, 5, 8] k").replace("float[2, 4, 5, 8] v", "float[1, 4, 5, 8] v")
    before, after, fuse = fused(text)
    assert fuse.details["attention"] == 0
    assert_exact_rewrite(before, after)


def test_a_scale_of_higher_rank_than_the_scores_is_left_alone(fused, assert_exact_rewrite):
    """A one-element factor of rank 5 adds an axis to the scores: not a scale the op can take."""
    text = heads_text("    kt = Transpose<perm = [0, 1, 3, 2]>(k)", "root") \
        .replace("scores = MatMul(qs, ks)", "raw = MatMul(qs, ks)\n    scores = Mul(raw, half)") \
        .replace("float[1] root = {0.5}>", "float[1] root = {0.5}, float[1, 1, 1, 1, 1] half = {0.5}>") \
        .replace("float[2, 4, 5, 8] y)", "float[1, 2, 4, 5, 8] y)")
    before, after, fuse = fused(text)
    assert fuse.details["attention"] == 0
    assert_exact_rewrite(before, after)


@pytest.mark.slow  # exports the corpus models on a first run (later runs read the cache)
@pytest.mark.parametrize("name", ["torch-encoder-legacy", "torch-encoder-dynamo", "hf-bert-dynamo", "hf-distilbert-dynamo"])
def test_every_attention_block_of_pytorch_and_dynamo_exports_is_fused(name, assert_exact_rewrite):
    from onnxcompress.models.hardening import ENTRIES
    from onnxcompress.passes import Cleanup, FoldConstants

    entry = ENTRIES[name]
    before = io.load(entry.model())
    for pass_ in (FoldConstants(), Cleanup()):
        pass_(before)
    after = io.clone(before)
    fuse = Fuse(opset=23).apply(after)
    assert fuse.details["attention"] == 2 and "Softmax" not in ops(after)
    assert_exact_rewrite(before, after, entry.feeds("held-out", 4))
