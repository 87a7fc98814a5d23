"""The quantizers hold a fidelity budget by default: a collapse inside one output fails the run (exit 1, nothing
written) unless ``accept_loss`` accepts it; the fallback rescues what keeping layers in FP32 can rescue."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import checks, io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.cli import main
from onnxcompress.errors import CheckFailed
from onnxcompress.passes import QuantizeDynamic, QuantizeStatic

from .conftest import MLP_TEXT, with_weights

# Box-like channels in the hundreds and sigmoid class scores near 0.1, concatenated into one tensor:
# one INT8 scale for both rounds every score to the same level, as in a YOLO head.
MIXED_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
head (float[N, 3, 8, 8] x) => (float[N, 12, 64] y)
<float[4, 3, 1, 1] wa = {0.0}, float[4] ba = {0.0}, float[8, 3, 1, 1] wb = {0.0}, float[8] bb = {0.0},
 float[1] pixels = {300.0}, float[12, 12, 1, 1] wc = {0.0}, int64[3] rows = {0, 12, 64}>
{
    a = Conv (x, wa, ba)
    boxes = Mul (a, pixels)
    b = Conv (x, wb, bb)
    scores = Sigmoid (b)
    joined = Concat <axis = 1> (boxes, scores)
    %s
}
"""
AT_THE_OUTPUT = "y = Reshape (joined, rows)"  # the Concat is in the output tail: keeping the tail in FP32 rescues it
BEFORE_A_LAYER = "mixed = Conv (joined, wc)\n    y = Reshape (mixed, rows)"  # a layer follows it: no candidate rescues it


def mixed_head(tail: str) -> ir.Model:
    """``MIXED_TEXT`` ending in ``tail``: seeded conv weights, class biases at the usual 0.1 prior, ``wc`` the identity."""
    proto = onnx.parser.parse_model(MIXED_TEXT % tail)
    rng = np.random.default_rng(0)
    arrays = {
        "wa": rng.normal(size=(4, 3, 1, 1)), "ba": rng.normal(size=4), "wb": rng.normal(size=(8, 3, 1, 1)),
        "bb": np.full(8, np.log(0.1 / 0.9)), "wc": np.eye(12).reshape(12, 12, 1, 1),
    }
    for tensor in proto.graph.initializer:
        if tensor.name in arrays:
            tensor.CopyFrom(onnx.numpy_helper.from_array(arrays[tensor.name].astype(np.float32), tensor.name))
    for index, node in enumerate(proto.graph.node):
        node.name = f"{node.op_type.lower()}_{index}"
    return ir.serde.deserialize_model(proto)


def head_inputs(count: int = 32) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(4).uniform(0, 1, size=(count, 3, 8, 8)).astype(np.float32)}


def test_a_collapse_no_candidate_can_rescue_fails_the_pass() -> None:
    model = mixed_head(BEFORE_A_LAYER)
    with pytest.raises(CheckFailed) as failed:
        QuantizeStatic().apply(model, calibration=ArrayReader(head_inputs()))
    message = str(failed.value)
    assert message.startswith("quantize-static: slice error ") and "> 0.5 at 'y' axis 1 index " in message
    assert "on 8 held-out calibration samples" in message and message.endswith("accept_loss=true writes the model anyway")
    assert "\n" not in message


def test_the_output_tail_is_kept_in_fp32_when_it_alone_collapses_the_output() -> None:
    model = mixed_head(AT_THE_OUTPUT)
    reference = io.clone(model)
    run = QuantizeStatic().apply(model, calibration=ArrayReader(head_inputs()))
    fallback = run.details["fallback"]
    assert fallback["kept_fp32"] == ["the output tail"] and fallback["within_budget"]
    assert fallback["sensitivity"]["the output tail"] > 1.0
    assert {"Concat", "Sigmoid", "Mul"} <= {n.op_type for n in model.graph} and "QuantizeLinear" in {n.op_type for n in model.graph}
    feeds = head_inputs(4)
    scores = runtime.run(model, feeds)["y"][:, 4:], runtime.run(reference, feeds)["y"][:, 4:]
    assert np.abs(scores[0] - scores[1]).max() < 0.01


def test_the_fallback_rescues_a_layer_whose_weights_int8_cannot_hold() -> None:
    """One huge weight makes per-tensor INT8 round the rest of ``wa`` to zero; keeping its MatMul in FP32 meets the
    default budget (the calibration inputs never use the huge weight's row, so FP32 outputs stay ordinary)."""
    model = with_weights(MLP_TEXT)
    weight = model.graph.initializers["wa"].const_value.numpy().copy()
    weight[0, 0] = 500.0
    model.graph.initializers["wa"].const_value = ir.tensor(weight, name="wa")
    x = np.random.default_rng(5).normal(size=(32, 16)).astype(np.float32)
    x[:, 0] = 0.0
    run = QuantizeDynamic(per_channel=False).apply(model, calibration=ArrayReader({"x": x}))
    fallback = run.details["fallback"]
    assert fallback["kept_fp32"] == ["matmul_0"] and fallback["within_budget"]
    assert fallback["values"]["slice error"] <= 0.5 < fallback["sensitivity"]["matmul_0"]
    assert [n.op_type for n in model.graph if n.name == "matmul_0"] == ["MatMul"]
    assert checks.graph_problems(model) == []


def test_ordinary_int8_noise_keeps_the_default_budget(cnn, cnn_inputs) -> None:
    run = QuantizeStatic().apply(cnn, calibration=ArrayReader(cnn_inputs))
    fallback = run.details["fallback"]
    assert fallback["within_budget"] and fallback["kept_fp32"] == [] and fallback["values"]["slice error"] < 0.2
    assert fallback["judged_on"] == "4 held-out calibration samples"
    assert any(note.startswith("fidelity budget held on 4 held-out calibration samples: slice error") for note in run.notes)


def test_without_calibration_data_the_budget_is_judged_on_synthetic_inputs(mlp) -> None:
    run = QuantizeDynamic()(mlp)
    assert run.details["fallback"]["judged_on"].startswith("synthetic inputs")
    assert any("held on synthetic inputs" in note for note in run.notes)


def test_max_error_sets_the_budget_and_is_checked(mlp) -> None:
    run = QuantizeDynamic(max_error=2.0)(mlp)
    assert run.details["fallback"]["budget"] == {"slice error": 2.0}
    with pytest.raises(Exception, match="max_error must be > 0"):
        QuantizeDynamic(max_error=0.0)


def test_held_out_samples_are_not_calibrated_on() -> None:
    """Held-out samples far outside the rest would widen a min-max range; calibrated without them, they do not."""
    model = with_weights(MLP_TEXT)
    x = np.random.default_rng(6).normal(size=(32, 16)).astype(np.float32)
    x[3::4] *= 50.0  # every fourth sample: the ones held out
    run = QuantizeStatic(max_error=1e9, op_types=["MatMul"]).apply(model, calibration=ArrayReader({"x": x}))
    input_scale = next(v for name, v in model.graph.initializers.items() if name.startswith("x_scale")).const_value.numpy()
    kept = np.delete(x, np.s_[3::4], axis=0)
    assert float(input_scale) == pytest.approx((kept.max() - min(kept.min(), 0)) / 255, rel=1e-5)
    assert run.details["fallback"]["judged_on"] == "8 held-out calibration samples"


def _write_head(tmp_path, tail: str):
    path, data = tmp_path / "head.onnx", tmp_path / "calibration.npz"
    io.save(mixed_head(tail), path)
    np.savez(data, **head_inputs())
    return path, data


def test_cli_exits_1_and_writes_nothing_when_the_budget_breaks(tmp_path, capsys) -> None:
    path, data = _write_head(tmp_path, BEFORE_A_LAYER)
    out, report = tmp_path / "out.onnx", tmp_path / "report"
    code = main(["run", str(path), "-o", str(out), "-p", "quantize-static", "--calibration", str(data), "--no-bench", "--report", str(report)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and not out.exists()
    assert "slice error" in err and "> 0.5" in err and "accept_loss=true" in err and "\n" not in err


def test_cli_accept_loss_writes_the_model_and_says_the_budget_broke(tmp_path) -> None:
    path, data = _write_head(tmp_path, BEFORE_A_LAYER)
    out, report = tmp_path / "out.onnx", tmp_path / "report"
    code = main(["run", str(path), "-o", str(out), "-p", "quantize-static:accept_loss=true", "--calibration", str(data),
                 "--no-bench", "--report", str(report)])
    assert code == 0 and out.is_file()
    step = json.loads((report / "report.json").read_text())["steps"][1]
    assert any(note.startswith("budget broken, model kept as accept_loss=true asks: quantize-static: slice error")
               for note in step["notes"])
    assert step["details"]["fallback"]["accepted_loss"] and step["fidelity"]["worst_slice"]["error"] > 0.5


def test_empty_resize_constants_are_left_out_of_calibration_with_a_note() -> None:
    """An exporter's empty ``roi`` Constant has no values to take a range of and is left out (x, c, r, scales and y are not)."""
    model = with_weights("""
        <ir_version: 8, opset_import: ["" : 17]>
        up (float[N, 3, 8, 8] x) => (float[N, 8, 16, 16] y)
        <float[8, 3, 3, 3] w = {0.0}, float[8] b = {0.0}>
        {
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            r = Relu (c)
            roi = Constant <value = float[0] {}> ()
            scales = Constant <value = float[4] {1.0, 1.0, 2.0, 2.0}> ()
            y = Resize <mode = "nearest"> (r, roi, scales)
        }
    """)
    x = np.random.default_rng(7).normal(size=(16, 3, 8, 8)).astype(np.float32)
    run = QuantizeStatic().apply(model, calibration=ArrayReader({"x": x}))
    assert run.details["calibration"]["tensors"] == 5 and run.details["fallback"]["within_budget"]
    assert "left 1 empty tensor(s) out of calibration (e.g. 'roi'): they hold no values to take a range of" in run.notes
    assert "QuantizeLinear" in {n.op_type for n in model.graph} and runtime.run(model, {"x": x[:2]})["y"].shape == (2, 8, 16, 16)


def tied_classifier(with_label: bool) -> ir.Model:
    """``MLP_TEXT`` whose classes 0 and 1 lead on inputs around 3 and score almost the same (their weight columns
    differ by 1e-3), with the ArgMax as a second output ``label`` when ``with_label``: INT8 noise flips the label."""
    model = with_weights(MLP_TEXT)
    hidden = np.full(16, 3.0) @ model.graph.initializers["wa"].const_value.numpy()
    wb = model.graph.initializers["wb"]
    weights = wb.const_value.numpy().copy()
    weights[:, 0] = 2 * hidden / np.linalg.norm(hidden)
    weights[:, 1] = weights[:, 0] + 1e-3 * np.random.default_rng(2).normal(size=16)
    wb.const_value = ir.tensor(weights, name="wb")
    if with_label:
        argmax = ir.node("ArgMax", [model.graph.outputs[0]], attributes={"axis": 1, "keepdims": 0}, name="argmax")
        argmax.outputs[0].name, argmax.outputs[0].dtype = "label", ir.DataType.INT64
        model.graph.append(argmax)
        model.graph.outputs.append(argmax.outputs[0])
    return model


def test_a_categorical_output_is_judged_by_the_share_of_its_values_changed() -> None:
    x = {"x": 3 + np.random.default_rng(3).normal(size=(64, 16)).astype(np.float32)}
    scores_only = QuantizeStatic(op_types=["MatMul"], max_fallback=0).apply(tied_classifier(False), calibration=ArrayReader(x))
    assert scores_only.details["fallback"]["values"]["slice error"] < 0.1  # the scores barely move
    with pytest.raises(CheckFailed, match=r"changed labels 0\.\d+ > 0\.05 at 'label' on 16 held-out"):
        QuantizeStatic(op_types=["MatMul"], max_fallback=0).apply(tied_classifier(True), calibration=ArrayReader(x))
    rescued = QuantizeStatic(op_types=["MatMul"]).apply(tied_classifier(True), calibration=ArrayReader(x)).details["fallback"]
    assert rescued["kept_fp32"] == ["matmul_1"] and rescued["values"]["changed labels"] == 0.0
    loose = QuantizeStatic(op_types=["MatMul"], max_fallback=0, max_drop=0.9).apply(tied_classifier(True), calibration=ArrayReader(x))
    assert loose.details["fallback"]["budget"] == {"slice error": 0.5, "1 - cosine": 0.9}  # max_drop bounds the labels
    assert 0.05 < loose.details["fallback"]["values"]["1 - cosine"] <= 0.9


def test_a_run_whose_fallback_keeps_every_layer_in_fp32_says_so() -> None:
    # EfficientNet-B0's only MatMul/Gemm (its classifier) was kept in FP32, and the note said no node had a stored
    # weight to quantize
    model = with_weights(MLP_TEXT)
    x = np.random.default_rng(5).normal(size=(32, 16)).astype(np.float32)
    run = QuantizeDynamic(max_error=1e-9).apply(model, calibration=ArrayReader({"x": x}))
    assert run.details["fallback"]["within_budget"] and len(run.details["fallback"]["kept_fp32"]) >= 2
    (note,) = [n for n in run.notes if n.startswith("quantized no layer")]
    assert note.startswith("quantized no layer: the ") and note.endswith("were all kept in FP32 to hold the fidelity budget")
