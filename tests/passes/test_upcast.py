"""upcast: a half-precision model computes in float32 behind its own interface, exactly at both ORT levels."""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import fidelity, io, runtime, walk
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeDynamic, Upcast
from onnxcompress.passes.quantization.support.guard import quantized_nodes
from onnxcompress.passes.upcast import HALF_TYPES, half_precision_weights

HALF = """
<ir_version: 8, opset_import: ["" : 17]>
g (float16[N, 4] x, bool flag) => (float16[N, 4] y, float16[N, 4] z)
<float16[4, 4] w = {W}>
{
    c = Constant <value = float16[1] {HALF}> ()
    shape = Shape (x)
    ones = ConstantOfShape <value = float16[1] {ONE}> (shape)
    m = MatMul (x, w)
    h = Mul (m, c)
    wide = Cast <to = 1> (h)
    back = Cast <to = 10> (wide)
    y = Add (back, ones)
    z = If (flag) <
        then_branch = t () => (float16[N, 4] out) { out = Relu (y) },
        else_branch = e () => (float16[N, 4] out) { out = Neg (y) }
    >
}
"""

STORED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] y)
<float16[2, 2] w = {W}>
{
    w32 = Cast <to = 1> (w)
    y = MatMul (x, w32)
}
"""


WEIGHTS = np.arange(1, 17, dtype=np.float32).reshape(4, 4)


def _parse(text: str) -> ir.Model:
    return ir.serde.deserialize_model(onnx.parser.parse_model(text))


def _bits(values: np.ndarray, dtype=np.float16) -> str:
    """``values`` in ``dtype`` as the text format spells half-precision constants: their bits."""
    return "{" + ", ".join(str(b) for b in np.asarray(values, dtype=np.float32).ravel().astype(dtype).view(np.uint16)) + "}"


def _half() -> ir.Model:
    text = HALF.replace("{W}", _bits(WEIGHTS)).replace("{HALF}", _bits(0.5)).replace("{ONE}", _bits(1.0))
    return _parse(text)


def _feeds() -> dict[str, np.ndarray]:
    x = np.random.default_rng(0).uniform(-1, 1, (3, 4)).astype(np.float16)
    return {"x": x, "flag": np.array(True)}


def _half_types_inside(model: ir.Model) -> list[str]:
    """Names of values, weights and cast targets still in half precision, graph inputs and outputs left out."""
    graph = model.graph
    interface = {*graph.inputs, *graph.outputs}
    found = [v.name for v in graph.initializers.values() if v.dtype in HALF_TYPES]
    for node in walk.nodes(graph):
        found += [v.name for v in node.outputs if v.dtype in HALF_TYPES and v not in interface]
        if node.op_type == "Cast" and node.attributes.get_int("to") in HALF_TYPES and node.outputs[0] not in interface:
            found.append(node.name)
        found += [f"{node.name}.{a.name}" for a in node.attributes.values()
                  if a.type == ir.AttributeType.TENSOR and a.value.dtype in HALF_TYPES]
    return found


def test_a_float16_model_computes_in_float32_behind_its_own_interface(assert_exact_rewrite) -> None:
    before = _half()
    after = io.clone(before)
    run = Upcast()(after)
    assert run.modified and _half_types_inside(after) == []
    assert [v.dtype for v in (*after.graph.inputs, *after.graph.outputs)] == [v.dtype for v in (*before.graph.inputs, *before.graph.outputs)]
    assert [v.name for v in after.graph.outputs] == ["y", "z"]
    assert run.details["interface_casts"] == 3  # x in; y and z out
    assert run.details["casts_removed"] == 2  # h to float32 and back to float16: both float32 to float32 now
    assert_exact_rewrite(before, after, _feeds())


BFLOAT16_INSIDE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y)
<bfloat16[4, 4] w = {W}>
{
    xb = Cast <to = 16> (x)
    m = MatMul (xb, w)
    r = Relu (m)
    y = Cast <to = 1> (r)
}
"""


def test_a_bfloat16_model_gets_float32_kernels() -> None:
    """ORT's CPU provider has no bfloat16 MatMul or Relu: a model computing in bfloat16 behind a float32 interface
    (as converters write them) cannot load; after upcast it runs, all in float32."""
    model = _parse(BFLOAT16_INSIDE.replace("{W}", _bits(WEIGHTS, ml_dtypes.bfloat16)))
    with pytest.raises(UsageError, match="NOT_IMPLEMENTED"):
        runtime.session(model)
    Upcast()(model)
    assert [n.op_type for n in model.graph] == ["MatMul", "Relu"]
    x = np.random.default_rng(0).uniform(-1, 1, (3, 4)).astype(np.float32)
    np.testing.assert_allclose(runtime.run(model, {"x": x})["y"], np.maximum(x @ WEIGHTS, 0), rtol=1e-6)


def test_weights_only_stored_in_float16_lose_their_casts(assert_exact_rewrite) -> None:
    before = _parse(STORED.replace("{W}", _bits([1, 2, 3, 4])))
    after = io.clone(before)
    Upcast()(after)
    assert after.graph.initializers["w"].dtype == ir.DataType.FLOAT
    assert [n.op_type for n in after.graph] == ["MatMul"]
    assert_exact_rewrite(before, after)


def test_a_float32_model_is_left_as_it_is() -> None:
    model = _parse(STORED.replace("float16[2, 2] w", "float[2, 2] w").replace("{W}", "{1, 2, 3, 4}"))
    run = Upcast()(model)
    assert not run.modified and run.notes == ["nothing computes in float16 or bfloat16"]


def test_a_float16_model_quantizes_after_upcast() -> None:
    """The INT8 quantizers refuse a float16 model; after upcast dynamic INT8 runs and the float16 interface stays."""
    model = _half()
    Upcast()(model)
    quantized = QuantizeDynamic(accept_loss=True).apply(model).model
    assert quantized_nodes(quantized)
    assert quantized.graph.inputs[0].dtype == ir.DataType.FLOAT16
    assert runtime.run(quantized, _feeds())["y"].dtype == np.float16


def _llama(path, dynamo: bool, *, half: bool) -> ir.Model:
    """A one-layer transformers Llama (rotary embeddings, RMSNorm, a causal mask) exported by ``dynamo`` or not,
    after ``model.half()`` when ``half``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from onnxcompress.models import export
    from onnxcompress.models.hardening.hf import CausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64)
    llama = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 8))
    axes = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}, "logits": {1: "sequence"}}
    export.export_onnx(CausalLM(llama.half() if half else llama), path, (ids, torch.ones_like(ids)),
                       input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamo=dynamo, dynamic_axes=axes)
    return io.load(path)


def _token_feeds() -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(0, 64, (3, 11))
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_a_half_precision_llama_upcasts_exactly_and_quantizes(dynamo, tmp_path, assert_exact_rewrite) -> None:
    """A transformers Llama exported after ``model.half()``, from both exporters."""
    before = _llama(tmp_path / "llama.onnx", dynamo, half=True)
    assert before.graph.outputs[0].dtype == ir.DataType.FLOAT16
    after = io.clone(before)
    Upcast()(after)
    assert _half_types_inside(after) == [] and after.graph.outputs[0].dtype == ir.DataType.FLOAT16
    assert_exact_rewrite(before, after, _token_feeds())
    assert quantized_nodes(QuantizeDynamic(accept_loss=True).apply(after).model)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_onnxruntimes_float16_conversion_is_undone_exactly(dynamo, tmp_path) -> None:
    """ONNX Runtime's own converter (``convert_float_to_float16(keep_io_types=True)``: float32 interface, float16
    inside behind Casts) is how most float16 ONNX models are made."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns for every weight it rounds
        converted = convert_float_to_float16(io.to_proto(_llama(tmp_path / "llama.onnx", dynamo, half=False)), keep_io_types=True)
    before = ir.from_proto(converted)
    assert half_precision_weights(before)
    after = io.clone(before)
    Upcast()(after)
    assert _half_types_inside(after) == [] and not half_precision_weights(after)
    precision = fidelity.model_precision(before)  # float16 inside: the pipeline's exact-pass tolerance is float16's
    assert precision == np.float16
    expected = runtime.run(before, _token_feeds(), optimization="disable")
    for level in ("disable", "all"):
        assert fidelity.compare(expected, runtime.run(after, _token_feeds(), optimization=level), precision=precision).exact


def test_an_optional_of_float16_sequences_is_retyped_in_its_node_and_its_value() -> None:
    sequence = onnx.helper.make_sequence_type_proto(onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT16, [5]))
    optional = onnx.helper.make_optional_type_proto(sequence)
    graph = onnx.helper.make_graph([onnx.helper.make_node("Optional", [], ["empty"], type=sequence),
                                    onnx.helper.make_node("OptionalHasElement", ["empty"], ["has"])], "g", [],
                                   [onnx.helper.make_tensor_value_info("has", onnx.TensorProto.BOOL, [])],
                                   value_info=[onnx.helper.make_value_info("empty", optional)])
    model = ir.from_proto(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]))
    Upcast()(model)
    node = model.graph[0]
    assert node.attributes["type"].value.type == ir.SequenceType(ir.TensorType(ir.DataType.FLOAT))
    assert node.outputs[0].type == ir.OptionalType(ir.SequenceType(ir.TensorType(ir.DataType.FLOAT)))
    assert runtime.run(model, {})["has"] == np.array(False)
