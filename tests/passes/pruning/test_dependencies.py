"""The channel dependency graph on small ONNX-text graphs: what couples, what freezes and why."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes.pruning import PruneChannels
from onnxcompress.passes.pruning.dependencies import PROBED, build_channel_graph, infer_shapes
from onnxcompress.passes.pruning.groups import frozen_summary, group_infos

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

RESIDUAL_CONCAT = HEADER + """
g (float[N,3,8,8] x) => (float[N,10] y) {
  a = Conv<pads=[1,1,1,1]>(x, w1, b1)
  an = BatchNormalization(a, s1, bb1, m1, var1)
  ar = Relu(an)
  c = Conv<pads=[1,1,1,1]>(ar, w2)
  d = Conv<pads=[1,1,1,1]>(c, w3, b3)
  r = Add(d, ar)
  rr = HardSwish(r)
  dw = Conv<pads=[1,1,1,1], group=8>(rr, wd)
  se = GlobalAveragePool(dw)
  gate = Sigmoid(se)
  scaled = Mul(dw, gate)
  cat = Concat<axis=1>(scaled, rr)
  p = GlobalAveragePool(cat)
  f = Flatten(p)
  y = Gemm<transB=1>(f, wf, bf)
}"""
RESIDUAL_SHAPES = {
    "w1": (8, 3, 3, 3), "b1": (8,), "s1": (8,), "bb1": (8,), "m1": (8,), "var1": (8,),
    "w2": (6, 8, 3, 3), "w3": (8, 6, 3, 3), "b3": (8,), "wd": (8, 1, 3, 3), "wf": (10, 16), "bf": (10,),
}


def _groups(model, **options):
    infer_shapes(model)
    graph = build_channel_graph(model, **options)
    infos = group_infos(graph)
    sizes = {}
    for unit in graph.units():
        if unit.group in infos:
            sizes[infos[unit.group].name] = sizes.get(infos[unit.group].name, 0) + 1
    return graph, infos, sizes


def test_residual_add_depthwise_and_concat_form_one_group(make_model):
    _, _, sizes = _groups(make_model(RESIDUAL_CONCAT, RESIDUAL_SHAPES))
    # conv1 output, both sides of the Add, the depthwise conv, the SE Mul and both Concat halves
    # share the 8 channels; the inner conv's 6 channels are their own group
    assert sizes["w1[0]"] == 8
    assert sizes["w2[0]"] == 6
    assert "w3[0]" not in sizes


def test_removal_rewrites_depthwise_group_and_gemm_columns(make_model, check_pruned):
    model = make_model(RESIDUAL_CONCAT, RESIDUAL_SHAPES)
    feeds = runtime.synthetic_inputs(model, batch=2)
    before = runtime.run(model, feeds, optimization="disable")
    assert PruneChannels(ratio=0.5, accept_loss=True)(model).modified
    after = check_pruned(make_model(RESIDUAL_CONCAT, RESIDUAL_SHAPES), model, feeds)
    assert after["y"].shape == before["y"].shape
    depthwise = next(n for n in model.graph if n.op_type == "Conv" and n.attributes.get_int("group", 1) > 1)
    assert depthwise.attributes.get_int("group") == 4
    assert model.graph.initializers["wf"].const_value.shape == (10, 8)  # both Concat halves lost 4


def test_frozen_channels_are_explained_in_the_groups_and_the_note(make_model):
    body = "a = Conv(x, w1)\n  b = LpNormalization<axis=1>(a)\n  y = Conv(b, w2)"
    reason = "no pruning rule for LpNormalization"
    text = HEADER + f"""
g (float[N,4,8,8] x) => (float[N,4,8,8] y) {{
  {body}
}}"""
    model = make_model(text, {"w1": (6, 4, 1, 1), "w2": (4, 6, 1, 1)})
    result = PruneChannels(ratio=0.5)(model)
    assert not result.modified
    assert any(reason in (g["reason"] or "") for g in result.details["groups"])
    note = next(n for n in result.notes if n.startswith("nothing can be pruned: every channel is frozen or needed; "))
    assert f"groups are frozen because {reason}, e.g. at " in note
    assert frozen_summary([{"reason": None}]) == ""


def test_layernorm_axis_frozen_unless_asked(make_model, check_pruned):
    text = HEADER + """
g (float[N,5,8] x) => (float[N,5,4] y) {
  h = MatMul(x, w1)
  n = LayerNormalization<axis=-1>(h, g1, be1)
  y = MatMul(n, w2)
}"""
    shapes = {"w1": (8, 6), "g1": (6,), "be1": (6,), "w2": (6, 4)}
    graph, infos, _ = _groups(make_model(text, shapes), layernorm=False)
    reasons = {graph.frozen_reason(u) for u in graph.units() if u.group in infos}
    assert any("LayerNormalization" in (r or "") for r in reasons)
    model = make_model(text, shapes)
    feeds = runtime.synthetic_inputs(model, batch=2)
    pruner = PruneChannels(ratio=0.5, layernorm=True)
    assert pruner(model).modified
    check_pruned(make_model(text, shapes), model, feeds)
    assert model.graph.initializers["g1"].const_value.shape == (3,)


def test_split_and_slice_constants_are_rewritten(make_model, check_pruned):
    text = HEADER + """
g (float[N,3,8,8] x) => (float[N,2,8,8] y)
  <int64[2] split = {4, 4}, int64[1] starts = {1}, int64[1] ends = {3}, int64[1] axes = {1}> {
  a = Conv(x, w1)
  r = Relu(a)
  s1, s2 = Split<axis=1>(r, split)
  t = Slice(s2, starts, ends, axes)
  c = Concat<axis=1>(s1, t)
  y = Conv(c, w2)
}"""
    shapes = {"w1": (8, 3, 1, 1), "w2": (2, 6, 1, 1)}
    model = make_model(text, shapes)
    feeds = runtime.synthetic_inputs(model, batch=2)
    assert PruneChannels(ratio=0.5, accept_loss=True)(model).modified
    check_pruned(make_model(text, shapes), model, feeds)
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert conv.inputs[1].const_value.shape[0] < 8  # filters removed from the first conv


def test_exclude_freezes_every_group_the_tensor_touches(make_model):
    model = make_model(RESIDUAL_CONCAT, RESIDUAL_SHAPES)
    result = PruneChannels(ratio=0.5, exclude=["w2"])(model)
    assert not result.modified  # w2 reads the residual group and writes the inner one
    groups = {g["group"]: g for g in result.details["groups"]}
    for name in ("w1[0]", "w2[0]"):
        assert groups[name]["removed"] == 0
        assert "excluded by the user ('w2')" in groups[name]["reason"]


def test_min_channels_bounds_every_group(make_model):
    result = PruneChannels(ratio=0.9, min_channels=3, accept_loss=True)(make_model(RESIDUAL_CONCAT, RESIDUAL_SHAPES))
    assert result.modified
    groups = {g["group"]: g for g in result.details["groups"]}
    assert groups["w1[0]"]["kept"] == 3
    assert groups["w2[0]"]["kept"] == 3


FIXED_LENGTH = HEADER + """
g (float[N,S,4] x) => (float[N,6] y) {
  flat = Reshape(x, shape)
  h = MatMul(flat, w)
  y = ReduceMean<axes=[1], keepdims=0>(h)
}"""


def test_a_model_fixed_to_its_datas_length_is_probed_at_that_length(make_model):
    """An export that baked its sequence length into a constant (PyTorch's legacy MHA) runs at no probe size: the
    probes keep the example data's length and vary the batch only, so the static axes still come out."""
    model = make_model(FIXED_LENGTH, {"w": (4, 6)})
    model.graph.initializers["shape"] = shape = ir.Value(
        name="shape", const_value=ir.tensor(np.array([-1, 8, 4], dtype=np.int64), name="shape"))
    shape.shape, shape.type = ir.Shape([3]), ir.TensorType(ir.DataType.INT64)
    model.graph.node(0).replace_input_with(1, shape)
    h = model.graph.node(1).outputs[0]
    infer_shapes(model)
    assert PROBED not in h.meta
    infer_shapes(model, example={"x": (4, 8, 4)})
    assert list(h.shape)[1:] == [8, 6] and h.meta[PROBED] == ((2, 8, 6), (3, 8, 6))


CACHED = HEADER + """
g (float[N,S,4] x, float[N,P,4] past, float[N,T] mask) => (float[N,T,4] present) {
  new = MatMul(x, w)
  cat = Concat<axis=1>(past, new)
  axes = Constant<value=int64[1] {2}>()
  weights = Unsqueeze(mask, axes)
  present = Mul(cat, weights)
}"""


def test_a_dim_named_by_arithmetic_follows_the_probed_dims_it_names(make_model):
    """A decoder exported with its cache declares its mask over ``past_sequence_length + sequence_length``: the
    probes gave it a length of its own, the model failed at both sizes, and nothing was probed."""
    model = make_model(CACHED, {"w": (4, 4)})
    model.graph.inputs[2].shape = ir.Shape(["N", "P + S"])
    infer_shapes(model)
    cat = model.graph.node(1).outputs[0]
    assert cat.meta[PROBED] == ((2, 32, 4), (3, 34, 4))


GROUPED = HEADER + """
g (float[N,4,8,8] x) => (float[N,4,8,8] y) {
  a = Conv(x, w1)
  ar = Relu(a)
  b = Conv<pads=[1,1,1,1], group=3>(ar, w2, b2)
  br = Relu(b)
  y = Conv(br, w3)
}"""
GROUPED_SHAPES = {"w1": (12, 4, 1, 1), "w2": (12, 4, 3, 3), "b2": (12,), "w3": (4, 12, 1, 1)}


def _grouped_with_dead_positions(make_model) -> ir.Model:
    """RegNet's bottleneck: a grouped 3x3 conv (3 groups of 4) between 1x1 convs; input position 1 and output position 2
    of every group read or give nothing, so removing them changes no output."""
    model = make_model(GROUPED, GROUPED_SHAPES)
    arrays = {name: model.graph.initializers[name].const_value.numpy().copy() for name in ("w1", "w2", "b2", "w3")}
    arrays["w1"][[1, 5, 9]] = 0
    arrays["w2"][:, 1] = 0
    arrays["w2"][[2, 6, 10]] = 0
    arrays["b2"][[2, 6, 10]] = 0
    arrays["w3"][:, [2, 6, 10]] = 0
    for name, array in arrays.items():
        model.graph.initializers[name].const_value = ir.tensor(array, name=name)
    return model


@pytest.mark.parametrize("importance", ["magnitude", "activation", "taylor"])
def test_a_grouped_convolution_removes_the_same_position_of_every_group(make_model, check_pruned, importance):
    # RegNet's and ResNeXt's grouped 3x3 convs were refused ("grouped convolution (group=3) that is not depthwise"):
    # RegNetX-200MF pruned 5 of its 98 groups
    _, _, sizes = _groups(make_model(GROUPED, GROUPED_SHAPES))
    assert sizes["w1[0]"] == 4 and sizes["w2[0]"] == 4  # 4 positions per group, each a unit of 3 channels
    model = _grouped_with_dead_positions(make_model)
    feeds = runtime.synthetic_inputs(model, batch=2)
    before = runtime.run(model, feeds, optimization="disable")
    calibration = ArrayReader({"x": np.random.default_rng(1).standard_normal((8, 4, 8, 8)).astype(np.float32)}, batch_size=4)
    assert PruneChannels(ratio=0.25, importance=importance).apply(model, calibration=calibration).modified
    after = check_pruned(_grouped_with_dead_positions(make_model), model, feeds)
    np.testing.assert_allclose(after["y"], before["y"], rtol=1e-5, atol=1e-5)
    grouped = next(n for n in model.graph if n.op_type == "Conv" and n.attributes.get_int("group", 1) > 1)
    assert grouped.attributes.get_int("group") == 3
    shapes = {name: model.graph.initializers[name].const_value.shape for name in ("w1", "w2", "b2", "w3")}
    assert shapes == {"w1": (9, 4, 1, 1), "w2": (9, 3, 3, 3), "b2": (9,), "w3": (4, 9, 1, 1)}
