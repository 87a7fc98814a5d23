"""Channel-consistency rules: each rule flags the inconsistency the checker lets through, and only it."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import checks, shape_rules


def model_from_text(text: str, **shapes: tuple[int, ...]) -> ir.Model:
    """Parse ONNX text; initializers named in ``shapes`` get seeded values of that shape."""
    rng = np.random.default_rng(0)
    tensors = [ir.tensor(rng.standard_normal(s).astype(np.float32), name=n) for n, s in shapes.items()]
    return ir.from_onnx_text(text, initializers=tensors)


CONV = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4, 8, 8] x) => (float[1, 6, 8, 8] y) <float[{w}] w, float[{b}] b> {{
  y = Conv <pads = [1, 1, 1, 1], group = {group}> (x, w, b)
}}
"""


@pytest.mark.parametrize(
    ("weight", "bias", "group", "expected"),
    [
        ((6, 4, 3, 3), (6,), 1, []),
        ((6, 2, 3, 3), (6,), 2, []),
        ((6, 3, 3, 3), (6,), 1, ["weight has 3 input channels x group 1 = 3, input has 4"]),
        ((6, 4, 3, 3), (5,), 1, ["bias has 5 values for 6 output channels"]),
        ((6, 1, 3, 3), (6,), 4, ["6 output channels are not divisible by group 4"]),
    ],
)
def test_conv_rule(weight, bias, group, expected):
    text = CONV.format(w=",".join(map(str, weight)), b=",".join(map(str, bias)), group=group)
    model = model_from_text(text, w=weight, b=bias)
    assert [p.split(": ", 1)[1] for p in shape_rules.shape_problems(model)] == expected


def test_wrong_input_channels_pass_the_checker_but_not_the_rules():
    text = CONV.format(w="6,3,3,3", b="6", group=1)
    model = model_from_text(text, w=(6, 3, 3, 3), b=(6,))
    onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)
    assert checks.graph_problems(model) == []
    assert shape_rules.shape_problems(model) == [
        "Conv node '(unnamed)': weight has 3 input channels x group 1 = 3, input has 4"
    ]


GEMM = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 8] a) => (float[2, 5] y) <float[{b}] b, float[{c}] c> {{
  y = Gemm <transB = {trans}> (a, b, c)
}}
"""


@pytest.mark.parametrize(
    ("b", "c", "trans", "expected"),
    [
        ((5, 8), (5,), 1, []),
        ((8, 5), (1,), 0, []),
        ((5, 7), (5,), 1, ["inner dimension 8 != 7"]),
        ((8, 5), (4,), 0, ["C has 4 columns for a result with 5"]),
    ],
)
def test_gemm_rule(b, c, trans, expected):
    text = GEMM.format(b=",".join(map(str, b)), c=",".join(map(str, c)), trans=trans)
    model = model_from_text(text, b=b, c=c)
    assert [p.split(": ", 1)[1] for p in shape_rules.shape_problems(model)] == expected


@pytest.mark.parametrize(("rows", "expected"), [(8, []), (6, ["inner dimension 8 != 6"])])
def test_matmul_rule(rows, expected):
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3, 8] a) => (float[2, 3, 4] y) <float[{rows}, 4] w> {{
      y = MatMul(a, w)
    }}
    """
    model = model_from_text(text, w=(rows, 4))
    assert [p.split(": ", 1)[1] for p in shape_rules.shape_problems(model)] == expected


def test_batchnorm_rule_names_each_wrong_vector():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4, 2, 2] x) => (float[1, 4, 2, 2] y) <float[4] s, float[3] b, float[4] m, float[5] v> {
      y = BatchNormalization(x, s, b, m, v)
    }
    """
    model = model_from_text(text, s=(4,), b=(3,), m=(4,), v=(5,))
    assert [p.split(": ", 1)[1] for p in shape_rules.shape_problems(model)] == [
        "bias has 3 values for 4 channels",
        "var has 5 values for 4 channels",
    ]


@pytest.mark.parametrize(("other", "expected"), [("1, 3, 4", []), ("1, 3, 5", ["inputs disagree on axis 2: [4, 5]"])])
def test_concat_rule(other, expected):
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 2, 4] a, float[{other}] b) => (float[1, 5, 4] y) {{
      y = Concat <axis = 1> (a, b)
    }}
    """
    model = ir.from_onnx_text(text)
    assert [p.split(": ", 1)[1] for p in shape_rules.shape_problems(model)] == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [("2, 12", []), ("-1, 6", []), ("0, 12", []), ("5, 5", ["cannot reshape 24 elements to [5, 5]"]), ("-1, 5", ["cannot reshape 24 elements to [-1, 5]"])],
)
def test_reshape_rule(target, expected):
    count = len(target.split(","))
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3, 4] x) => (float[?, ?] y) <int64[{count}] s = {{{target}}}> {{
      y = Reshape(x, s)
    }}
    """
    model = ir.from_onnx_text(text)
    problems = [p.split(": ", 1)[1] for p in shape_rules.shape_problems(model)]
    assert problems == expected


def test_unknown_dimensions_are_never_a_problem():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, C, 8, 8] x) => (float[N, 6, 8, 8] y) <float[6, 3, 3, 3] w> {
      y = Conv <pads = [1, 1, 1, 1]> (x, w)
    }
    """
    assert shape_rules.shape_problems(model_from_text(text, w=(6, 3, 3, 3))) == []


def test_rules_look_inside_subgraphs():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2, 8] a) => (float[2, 4] y) <float[6, 4] w> {
      y = If (c) <then_branch = t () => (float[2, 4] r) { r = MatMul(a, w) },
                  else_branch = e () => (float[2, 4] r2) { r2 = MatMul(a, w) }>
    }
    """
    problems = shape_rules.shape_problems(model_from_text(text, w=(6, 4)))
    assert len(problems) == 2 and all("inner dimension 8 != 6" in p for p in problems)


def test_the_rules_read_the_shapes_strict_inference_found_and_a_graph_without_their_ops_infers_nothing(monkeypatch):
    inferred = []
    infer = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda *args, **kwargs: inferred.append(kwargs) or infer(*args, **kwargs))
    conv = model_from_text(CONV.format(w="6,3,3,3", b="6", group=1), w=(6, 3, 3, 3), b=(6,))
    problems = checks.structure_problems(conv)
    assert problems[checks.CHANNEL_RULES] == ["Conv node '(unnamed)': weight has 3 input channels x group 1 = 3, input has 4"]
    assert [kwargs.get("strict_mode") for kwargs in inferred] == [True]  # once, for the checker and the rules
    inferred.clear()
    relu = ir.from_onnx_text('<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) { y = Relu(x) }')
    assert shape_rules.shape_problems(relu) == [] and inferred == []


def test_branches_naming_their_values_alike_are_each_judged_on_their_own_shapes():
    # Optimum's merged decoders: the rules read a value's shape by name across all graphs (and onnx's data
    # propagation leaks shapes between branches), so a valid BART decoder failed "inputs have different ranks"
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c) => (int64[2] y) {
      y = If (c) <then_branch = t () => (int64[2] r) {
                      k = Constant <value = int64 {1}> ()
                      axes = Constant <value = int64[1] {0}> ()
                      u = Unsqueeze (k, axes)
                      r = Concat <axis = 0> (u, u)
                  },
                  else_branch = e () => (int64[2] r2) {
                      k = Constant <value = int64[1] {1}> ()
                      one = Constant <value = int64[1] {1}> ()
                      r2 = Concat <axis = 0> (k, one)
                  }>
    }
    """
    assert checks.structure_problems(ir.from_onnx_text(text)) == {checks.CHECKER: [], checks.CHANNEL_RULES: []}
