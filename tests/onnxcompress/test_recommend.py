"""Recommendations: the family from the graph, the CPU's int8 support, a sensible pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import bench, io, recommend, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.pipeline import LabelledData, Measurement, Pipeline
from onnxcompress.spec import parse_pass

from ..passes.pruning.test_prune_channels import constant_channels, constant_channels_data
from onnxcompress.passes import REGISTRY
from onnxcompress.cpu import CpuFeatures

ENCODER_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
enc (float[N, 8, 16] x) => (float[N, 8, 16] y) <float[16, 16] wq = {0.0}, float[16, 16] wk = {0.0}, float[16] g = {0.0}> {
  q = MatMul(x, wq)
  k = MatMul(x, wk)
  kt = Transpose <perm = [0, 2, 1]> (k)
  s = MatMul(q, kt)
  p = Softmax <axis = -1> (s)
  a = MatMul(p, x)
  r = Add(a, x)
  y = LayerNormalization <axis = -1> (r, g)
}
"""

DECODER_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
dec (float[N, 8, 8] s) => (float[N, 8, 8] p) {
  m = Trilu <upper = 0> (s)
  p = Softmax <axis = -1> (m)
}
"""

CAUSAL_MASK_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
causal (float[N, 8, 8] s, int64 length) => (float[N, 8, 8] logits) <int64 zero = {0}, int64 one = {1}, int64[1] axis = {0}> {
  keys = Range(zero, length, one)
  queries = Range(zero, length, one)
  column = Unsqueeze(queries, axis)
  allowed = LessOrEqual(keys, column)
  hidden = Not(allowed)
  masked = Where(hidden, s, s)
  logits = Softmax <axis = -1> (masked)
}
"""

MOBILE_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
mobile (float[N, 4, 8, 8] x) => (float[N, 8, 8, 8] y) <float[4, 1, 3, 3] dw = {0.0}, float[8, 4, 1, 1] pw = {0.0}> {
  d = Conv <group = 4, pads = [1, 1, 1, 1]> (x, dw)
  h = HardSwish(d)
  y = Conv(h, pw)
}
"""
GROUPED_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
grouped (float[N, 4, 8, 8] x) => (float[N, 4, 8, 8] y) <float[4, 2, 3, 3] w = {0.0}> {
  y = Conv <group = 2, pads = [1, 1, 1, 1]> (x, w)
}
"""

RECURRENT_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
rnn (float[T, N, 4] x) => (float[T, 1, N, 8] y) <float[1, 32, 4] w = {0.0}, float[1, 32, 8] r = {0.0}> {
  y = LSTM <hidden_size = 8> (x, w, r)
}
"""

VNNI = CpuFeatures("x86_64", frozenset({"avx2", "avx512_vnni"}))
OLD_X86 = CpuFeatures("x86_64", frozenset({"sse4_2"}))


def test_families_are_recognised(cnn_model, mlp_model):
    assert recommend.detect_family(cnn_model)[0] == "cnn"
    assert recommend.detect_family(ir.from_onnx_text(RECURRENT_TEXT)) == ("recurrent", ["LSTM x1"])
    assert recommend.detect_family(mlp_model)[0] == "mlp"
    assert recommend.detect_family(ir.from_onnx_text(ENCODER_TEXT))[0] == "transformer-encoder"
    family, evidence = recommend.detect_family(ir.from_onnx_text(DECODER_TEXT))
    assert family == "decoder" and "Trilu" in evidence[0]


def test_attention_scores_reshaped_before_the_softmax_are_attention():
    # tf2onnx writes Keras' attention einsum as a MatMul between Reshapes, Squeezed before the scale: it was an "mlp"
    # and got no transformer step
    einsum = ENCODER_TEXT.replace("  s = MatMul(q, kt)\n", "  m = MatMul(q, kt)\n  shape = Constant <value = int64[4] {-1, 1, 8, 8}> ()\n"
                                  "  r4 = Reshape(m, shape)\n  axes = Constant <value = int64[1] {1}> ()\n  s = Squeeze(r4, axes)\n")
    assert recommend.detect_family(ir.from_onnx_text(einsum))[0] == "transformer-encoder"


def test_a_causal_mask_built_from_compared_positions_means_decoder():
    # transformers writes Llama's and GPT-2's causal masks as key index <= query index over two Ranges, not Trilu
    family, evidence = recommend.detect_family(ir.from_onnx_text(CAUSAL_MASK_TEXT))
    assert family == "decoder" and evidence == ["causal mask (positions compared x1)"]
    assert recommend.detect_family(ir.from_onnx_text(ENCODER_TEXT))[0] == "transformer-encoder"
    # a causal encoder (CLIP's text tower) outputs embeddings, not next-token logits
    assert recommend.detect_family(ir.from_onnx_text(CAUSAL_MASK_TEXT.replace("logits", "text_embeds")))[0] != "decoder"


def test_depthwise_convs_mean_a_mobile_cnn_and_grouped_ones_do_not():
    family, evidence = recommend.detect_family(ir.from_onnx_text(MOBILE_TEXT))
    assert family == "mobile-cnn" and evidence == ["Conv x2", "depthwise Conv x1"]
    assert recommend.detect_family(ir.from_onnx_text(GROUPED_TEXT))[0] == "cnn"


def test_mobile_cnn_plan_measures_its_fp32_prefix():
    steps = recommend.plan("mobile-cnn", VNNI)
    assert [s.spec for s in steps][-2:] == ["prune-channels:ratio=0.3", "quantize-static:fp32_prefix=fastest"]
    assert "Depthwise" in steps[-1].reason
    assert [s.spec for s in recommend.plan("mobile-cnn", OLD_X86)][-1] == "prune-channels:ratio=0.3"


def test_past_key_values_input_means_decoder(mlp_model):
    mlp_model.graph.inputs[0].name = "past_key_values.0.key"
    assert recommend.detect_family(mlp_model)[0] == "decoder"


def test_cnn_plan_prunes_then_quantizes_statically():
    specs = [s.spec.split(":")[0] for s in recommend.plan("cnn", VNNI)]
    assert specs == ["fold-constants", "cleanup", "fuse", "prune-channels", "quantize-static"]
    assert "VNNI" in recommend.plan("cnn", VNNI)[-1].reason


@pytest.mark.parametrize("family", ["transformer-encoder", "decoder", "recurrent", "mlp"])
def test_weight_heavy_families_get_dynamic_int8_without_pruning(family):
    specs = [s.spec for s in recommend.plan(family, VNNI)]
    assert specs[-1].split(":")[0] == "quantize-dynamic" and not any(s.startswith("prune") for s in specs)


def test_no_int8_on_a_cpu_without_int8_support():
    assert [s.spec for s in recommend.plan("transformer-encoder", OLD_X86)] == ["fold-constants", "cleanup", "fuse:opset=23"]
    assert [s.spec for s in recommend.plan("other", VNNI)] == ["fold-constants", "cleanup", "fuse"]


@pytest.mark.parametrize("family", ["transformer-encoder", "decoder"])
def test_transformers_are_fused_at_the_opset_with_attention(family):
    fuse = recommend.plan(family, VNNI)[2]
    assert fuse.spec == "fuse:opset=23" and "Attention" in fuse.reason


def test_recommendation_keeps_only_installed_passes_and_builds_the_command(cnn_model):
    rec = recommend.recommend(cnn_model, VNNI)
    planned = [s.spec.split(":")[0] for s in recommend.plan("cnn", VNNI)]
    assert [s.spec.split(":")[0] for s in rec.steps] == [p for p in planned if p in REGISTRY]
    assert len(rec.steps) + len(rec.skipped) == len(planned)
    command = rec.command("in.onnx", "out.onnx")
    assert command.startswith("onnxcompress run in.onnx -o out.onnx -p fold-constants")
    assert ("--calibration DATA" in command) == ("quantize-static" in REGISTRY)


@pytest.mark.slow
def test_minilm_export_is_a_transformer_encoder(minilm_onnx):
    rec = recommend.recommend(io.load(minilm_onnx), VNNI)
    assert rec.family == "transformer-encoder"
    assert [s.spec for s in recommend.plan(rec.family, VNNI)][-4:] == ["split-outliers", "smooth", "scale-tokens", "quantize-dynamic:gptq=true"]
    assert "--calibration DATA" in rec.command("in.onnx", "out.onnx")


@pytest.mark.parametrize("calibrated", [False, True])
def test_a_transformer_without_calibration_data_gets_plain_dynamic_int8(mlp_model, calibrated):
    # recommend on Optimum's merged BART decoder without data dropped its only INT8 step (GPTQ needs calibration) and
    # kept the exact passes at 1.11x; plain dynamic INT8 ran it at 1.78x
    int8 = recommend.plan("decoder", VNNI)[-1]
    plan = recommend.Recommendation("decoder", [], VNNI, [int8], [])
    data = ArrayReader({"x": np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)}) if calibrated else None
    rec = recommend.prove(mlp_model, plan, calibration=data, timer=float_weights)
    assert [s.spec for s in rec.steps] == ["quantize-dynamic:gptq=true" if calibrated else "quantize-dynamic"]
    assert calibrated or "as no calibration data was given" in rec.steps[0].reason


@pytest.mark.parametrize(("samples", "unseen"), [(32, True), (128, False)])
def test_a_lossy_chain_with_no_label_changed_on_few_samples_is_marked_not_proven(samples, unseen):
    # RegNet's recommended static INT8 kept top-1 on the 8 held-out samples and changed it on 4 of 32 others
    from ..passes.test_budget import FIXED_CLASSIFIER

    classifier = ir.from_onnx_text(FIXED_CLASSIFIER)
    plan = recommend.Recommendation("mlp", [], VNNI, [recommend.Step("quantize-dynamic", "int8")], [])
    data = ArrayReader({"x": np.random.default_rng(0).standard_normal((samples, 3, 2, 2)).astype(np.float32)})
    rec = recommend.prove(classifier, plan, calibration=data, timer=float_weights)
    assert [s.spec for s in rec.steps] == ["quantize-dynamic"] and rec.proof.fidelity["changed labels"] == 0
    assert (rec.proof.unseen is not None) == unseen
    if unseen:
        assert rec.proof.unseen.startswith("no label changed on the 8 samples judged") and "31%" in rec.proof.unseen


def float_weights(models, feeds, **_) -> list[float]:
    """A stand-in latency: the float weight elements of each model (pruning and INT8 both lower it)."""
    return [float(sum(v.const_value.size for v in m.graph.initializers.values() if v.const_value.dtype == ir.DataType.FLOAT))
            for m in models]


def int8_costs(models, feeds, **_) -> list[float]:
    """A stand-in latency that Q/DQ nodes raise (INT8 looks slower) and pruning lowers."""
    qdq = [any(n.op_type == "QuantizeLinear" for n in m.graph) for m in models]
    return [weights + 1e9 * slow for weights, slow in zip(float_weights(models, feeds), qdq)]


def lossy_drops(rec: recommend.Recommendation) -> list[recommend.Check]:
    """The steps left out for a reason other than having nothing to do on the model (this file's models have
    nothing for the exact passes to fold, remove or fuse)."""
    return [c for c in rec.proof.dropped if c.reason != recommend.UNCHANGED]


def test_a_step_that_breaks_fidelity_is_dropped_with_the_reason(monkeypatch):
    monkeypatch.setattr(recommend, "_can_recover", lambda step, calibration: False)  # as without PyTorch
    model = constant_channels(low_bias=1.0)
    rec = recommend.prove(model, recommend.recommend(model, VNNI), calibration=ArrayReader(constant_channels_data()), timer=float_weights)
    assert [s.spec for s in rec.steps] == ["quantize-static"]
    (dropped,) = lossy_drops(rec)
    assert dropped.spec == "prune-channels:ratio=0.3" and dropped.reason.startswith("prune-channels: slice error ")
    assert "on 8 held-out calibration samples, without recovery" in dropped.reason
    assert rec.proof.judged_on == "8 held-out calibration samples" and rec.proof.task_checked
    assert rec.proof.fidelity["slice error"] <= 0.5 and rec.proof.speedup > 1.0
    assert "--calibration calib.npz" in rec.command("m.onnx", "o.onnx", calibration="calib.npz")


def test_pruning_that_breaks_the_budget_is_tried_again_with_recovery():
    pytest.importorskip("torch")
    model = constant_channels(low_bias=1.0)
    rec = recommend.prove(model, recommend.recommend(model, VNNI), calibration=ArrayReader(constant_channels_data()), timer=float_weights)
    (dropped,) = lossy_drops(rec)  # 20 epochs on 24 samples are 20 steps: too few here, and said so
    assert dropped.spec == f"prune-channels:ratio=0.3 + {recommend.RECOVERY}"
    assert dropped.reason.startswith("recover: slice error ") and "after recovery" in dropped.reason


def test_recovery_that_brings_pruning_within_the_budget_is_kept_with_it():
    pytest.importorskip("torch")
    model = constant_channels(low_bias=1.0)
    recovery = "recover:epochs=20,lr=1e-2,batch_size=8"
    rec = recommend.Recommendation("cnn", [], VNNI, [recommend.Step("prune-channels:ratio=0.3", "pruning", recovery=recovery)], [])
    rec = recommend.prove(model, rec, calibration=ArrayReader(constant_channels_data(128)), timer=float_weights)
    (check,) = rec.proof.checks[:1]
    assert check.kept and check.spec == f"prune-channels:ratio=0.3 + {recovery}" and check.fidelity["slice error"] < 0.5
    assert [(s.spec, s.recovery) for s in rec.steps] == [("prune-channels:ratio=0.3", None), (recovery, None)]
    assert rec.steps[1].reason == recommend.RECOVERY_REASON
    assert f"-p prune-channels:ratio=0.3 -p {recovery} --calibration c.npz" in rec.command("m.onnx", "o.onnx", calibration="c.npz")


def test_without_labels_pruning_is_held_to_half_the_default_slice_error(monkeypatch):
    monkeypatch.setattr(recommend, "_can_recover", lambda step, calibration: False)
    model = constant_channels(low_bias=0.0)  # pruning leaves slice error 0.003
    plan = recommend.Recommendation("cnn", [], VNNI, [recommend.Step("prune-channels:ratio=0.3", "pruning", recovery=recommend.RECOVERY)], [])
    assert [s.spec for s in recommend.prove(model, plan, calibration=ArrayReader(constant_channels_data()), timer=float_weights).steps] == [
        "prune-channels:ratio=0.3"]
    monkeypatch.setattr(recommend, "UNLABELLED_PRUNING_MAX_ERROR", 0.001)
    strict = recommend.prove(model, plan, calibration=ArrayReader(constant_channels_data()), timer=float_weights)
    (dropped,) = strict.proof.dropped
    assert strict.steps == [] and 0.001 < dropped.fidelity["slice error"] < 0.5
    assert dropped.reason.startswith("slice error ") and "> 0.001 at " in dropped.reason
    assert "(the bound for pruning without labels; --labels judges top-1) against the input on 8 held-out" in dropped.reason
    feeds = constant_channels_data(16)
    labels = runtime.run(model, feeds)["y"].reshape(16, -1).argmax(axis=1)
    labelled = recommend.prove(model, plan, labelled=LabelledData(feeds, labels), timer=float_weights)
    assert [s.spec for s in labelled.steps] == ["prune-channels:ratio=0.3"]  # top-1 kept: labels decide, not the stricter error


def test_lossy_steps_judged_on_too_few_samples_are_left_out_and_exact_ones_run():
    model = constant_channels(low_bias=0.0)
    rec = recommend.prove(model, recommend.recommend(model, VNNI), calibration=ArrayReader(constant_channels_data(8)), timer=float_weights)
    assert rec.steps == [] and [c.reason for c in rec.proof.checks[:3]] == [recommend.UNCHANGED] * 3  # run, and found nothing to do
    assert [c.spec for c in lossy_drops(rec)] == ["prune-channels:ratio=0.3", "quantize-static"]
    assert all(c.reason == "lossy, and judged on only 2 held-out calibration samples: give 32 or more calibration samples "
                           "(a quarter are held out to judge on), or --labels" for c in lossy_drops(rec))


def test_when_everything_holds_every_step_that_changes_the_model_is_kept_and_measured():
    model = constant_channels(low_bias=0.0)
    rec = recommend.prove(model, recommend.recommend(model, VNNI), calibration=ArrayReader(constant_channels_data()), timer=float_weights)
    assert [s.spec for s in rec.steps] == ["prune-channels:ratio=0.3", "quantize-static"]
    assert lossy_drops(rec) == [] and all(c.fidelity["slice error"] <= 0.5 for c in rec.proof.checks)
    assert all(c.speedup is not None for c in rec.proof.checks if c.kept)
    assert rec.proof.budget == {"slice error": 0.5} and rec.proof.latency_on == "the first held-out calibration sample"
    pruned = next(c for c in rec.proof.checks if c.spec.startswith("prune"))
    assert pruned.speedup > 1.0 and pruned.fidelity["slice error"] < 0.05


def test_steps_with_nothing_to_do_on_the_model_are_not_recommended():
    """The dynamo export of an EfficientNet: fold-constants, cleanup and fuse each left it as it was, and the
    lossy steps broke the budget; recommend printed the three as a chain to run, at 1.00x."""
    model = constant_channels(low_bias=0.0)
    timed = []

    def timer(models, feeds, full=False) -> list[float]:
        timed.append(len(models))
        return float_weights(models, feeds)

    plan = recommend.Recommendation("cnn", [], VNNI, [recommend.Step(s, "exact") for s in ("fold-constants", "cleanup", "fuse")], [])
    rec = recommend.prove(model, plan, calibration=ArrayReader(constant_channels_data()), timer=timer)
    assert rec.steps == [] and rec.command("m.onnx", "o.onnx") is None
    assert [(c.spec, c.kept, c.reason) for c in rec.proof.checks] == [(s, False, recommend.UNCHANGED) for s in ("fold-constants", "cleanup", "fuse")]
    assert timed == [1] and rec.proof.speedup == 1.0  # only the input timed, for the report


def test_a_step_that_only_fills_in_shape_annotations_has_nothing_to_do(mlp_model):
    """fold-constants on PyTorch's dynamo export of an encoder folded nothing and only filled in the dims of 14
    value_info entries; it was kept and printed as advice."""
    outputs = {value.name for value in mlp_model.graph.outputs}
    for value in (v for node in mlp_model.graph for v in node.outputs if v.name not in outputs):  # dims unknown, as the export left them
        value.shape, value.type = ir.Shape([None, None]), ir.TensorType(ir.DataType.FLOAT)
    folded = Pipeline([parse_pass("fold-constants")], measurement=Measurement(benchmark=False)).run(io.clone(mlp_model)).model
    before, after = io.to_proto(mlp_model), io.to_proto(folded)
    assert before.SerializeToString() != after.SerializeToString() and recommend.computation(before) == recommend.computation(after)
    plan = recommend.Recommendation("mlp", [], VNNI, [recommend.Step("fold-constants", "exact")], [])
    rec = recommend.prove(mlp_model, plan, timer=float_weights)
    assert rec.steps == [] and [c.reason for c in rec.proof.checks] == [recommend.UNCHANGED]


def test_a_step_that_makes_the_model_slower_is_dropped():
    model = constant_channels(low_bias=0.0)
    rec = recommend.prove(model, recommend.recommend(model, VNNI), calibration=ArrayReader(constant_channels_data()), timer=int8_costs)
    (slower,) = lossy_drops(rec)
    assert slower.spec == "quantize-static" and slower.reason.startswith("made the model slower: ") and slower.speedup < 1.0
    assert rec.steps[-1].spec == "prune-channels:ratio=0.3"


def test_labels_make_the_budget_top1():
    model = constant_channels(low_bias=1.0)
    feeds = constant_channels_data(16)
    labels = runtime.run(model, feeds)["y"].reshape(16, -1).argmax(axis=1)
    rec = recommend.prove(model, recommend.recommend(model, VNNI), labelled=LabelledData(feeds, labels), timer=float_weights)
    assert rec.proof.judged_on == "16 labelled samples" and rec.proof.budget == {"accuracy drop": 0.01}
    assert "prune-channels:ratio=0.3" in [c.spec for c in rec.proof.dropped]


def test_without_data_it_says_what_it_could_not_check():
    model = constant_channels(low_bias=0.0)
    rec = recommend.prove(model, recommend.recommend(model, VNNI), timer=float_weights)
    assert not rec.proof.task_checked and rec.proof.judged_on.startswith("synthetic inputs")
    (dropped,) = lossy_drops(rec)
    assert dropped.spec == "quantize-static" and dropped.reason.startswith("not run: it needs calibration data (--calibration)")
    assert "--calibration" not in rec.command("m.onnx", "o.onnx")


def test_side_by_side_times_each_model(mlp_model):
    feeds, _ = recommend.latency_feeds(mlp_model, ArrayReader({"x": np.ones((4, 16), np.float32)}), {})
    assert {name: array.shape for name, array in feeds.items()} == {"x": (1, 16)}
    latencies = recommend.side_by_side([mlp_model, mlp_model], feeds)
    assert len(latencies) == 2 and all(ms > 0 for ms in latencies)


def test_a_model_synthetic_inputs_cannot_drive_gets_no_step_and_the_reason(monkeypatch, mlp_model):
    def refuse(*args, **kwargs):
        raise UsageError("running the model on synthetic inputs failed at input 'x': pass --inputs FILE.npz with real inputs")

    monkeypatch.setattr(runtime, "synthetic_inputs", refuse)
    rec = recommend.prove(mlp_model, recommend.recommend(mlp_model, VNNI), timer=float_weights)
    assert rec.steps == [] and rec.proof is None and rec.command("m.onnx", "o.onnx") is None
    assert rec.skipped[-1].startswith("every step: not run, running the model on synthetic inputs failed at input 'x'")
    with pytest.raises(UsageError):
        recommend.prove(mlp_model, recommend.recommend(mlp_model, VNNI), calibration=ArrayReader({"y": np.ones((4, 16), np.float32)}))


def test_a_difference_seen_in_the_quick_rounds_is_measured_again_in_full(monkeypatch, mlp_model):
    calls = []

    def measure(sessions, feeds, *, rounds, round_seconds, **options):
        calls.append(rounds)
        medians = [1.0, 2.0] if len(calls) == 1 else [1.0, 1.01]  # a noisy glimpse, then the full measurement
        return [bench.Latency(ms, ms, ms, 1, rounds, 0, 1, 1) for ms in medians]

    monkeypatch.setattr(bench, "measure", measure)
    feeds = {"x": np.ones((1, 16), np.float32)}
    assert recommend.side_by_side([mlp_model, mlp_model], feeds) == [1.0, 1.01]
    assert calls == [recommend.PROOF_ROUNDS, recommend.CONFIRM_ROUNDS]
    calls.clear()
    monkeypatch.setattr(bench, "measure", lambda sessions, feeds, *, rounds, **o: calls.append(rounds) or [bench.Latency(1.0, 1, 1, 1, rounds, 0, 1, 1)] * 2)
    assert recommend.side_by_side([mlp_model, mlp_model], feeds) == [1.0, 1.0]
    assert calls == [recommend.PROOF_ROUNDS]  # no difference: the quick rounds stand
    calls.clear()
    recommend.side_by_side([mlp_model, mlp_model], feeds, full=True)
    assert calls == [recommend.CONFIRM_ROUNDS]  # the whole chain's verdict is always the full measurement


def test_a_chain_not_measurably_faster_than_the_input_is_not_recommended():
    """Steps each within noise of the chain before them added up to a 5 % slower model on a real detector."""
    model = constant_channels(low_bias=0.0)
    verdicts = []

    def ties_then_full(models, feeds, full=False) -> list[float]:  # every step ties; the full measurement reads the first model 4 % slower
        verdicts.append(full)
        return [1.04, 1.0] if full else [1.0] * len(models)

    rec = recommend.prove(model, recommend.recommend(model, VNNI), calibration=ArrayReader(constant_channels_data()), timer=ties_then_full)
    assert verdicts[-2:] == [True, True] and not any(verdicts[:-2])  # the chain measured in full twice, in both orders
    assert rec.steps == [] and rec.command("m.onnx", "o.onnx") is None
    last = rec.proof.checks[-1]
    assert last.spec == "the chain" and not last.kept and last.reason.startswith("not measurably faster than the input as a whole (1 ms -> 1.04 ms, under 1.05x)")


def test_the_chains_gain_is_the_lesser_of_two_full_measurements_in_opposite_orders():
    model, chain = constant_channels(low_bias=0.0), constant_channels(low_bias=1.0)

    def first_measured_reads_slower(models, feeds, full=False) -> list[float]:  # an order bias of 10 %, no real difference
        return [1.1, 1.0]

    assert recommend.least_gain(first_measured_reads_slower, model, chain, {}) == (1.0, 1.1)  # the input first: no gain
    assert recommend.least_gain(lambda models, feeds, full=False: [2.0, 1.0] if models[0] is model else [1.0, 2.0], model, chain, {}) == (2.0, 1.0)


def test_the_command_pins_synthetic_dims_only_when_it_has_no_data_to_check_on(mlp_model):
    rec = dataclasses.replace(recommend.recommend(mlp_model, VNNI), input_shapes={"x": (1, 16)})
    assert "--input-shape x:1,16" in rec.command("m.onnx", "o.onnx")
    with_data = rec.command("m.onnx", "o.onnx", calibration="calib.npz")
    assert "--calibration calib.npz" in with_data and "--input-shape" not in with_data


VGG_HEAD_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
vgg (float[N, 3, 8, 8] x) => (float[N, 4] p) <float[8, 3, 3, 3] w = {0.0}, float[512, 16] d1 = {0.0}, float[16, 4] d2 = {0.0}> {
  c = Conv <pads = [1, 1, 1, 1]> (x, w)
  r = Relu(c)
  f = Flatten(r)
  h = MatMul(f, d1)
  l = MatMul(h, d2)
  p = Softmax <axis = -1> (l)
}
"""


def test_a_classifier_softmax_over_dense_layers_is_not_attention():
    """A Keras VGG16 (Conv layers, a dense head of MatMuls, a Softmax) was taken for a transformer."""
    import onnx.parser

    model = ir.from_proto(onnx.parser.parse_model(VGG_HEAD_TEXT))
    assert recommend.attention_blocks(model) == 0
    assert recommend.detect_family(model)[0] == "cnn"
    encoder = ir.from_proto(onnx.parser.parse_model(ENCODER_TEXT))
    assert recommend.attention_blocks(encoder) == 1


def test_a_preparation_whose_int8_step_was_dropped_is_left_out_too():
    from ..passes.quantization.test_smooth import block_with_outlier_channels, inputs

    model = block_with_outlier_channels()
    steps = [recommend.Step("smooth:alpha=0.5", "prepares INT8"), recommend.Step("quantize-dynamic", "INT8")]
    rec = dataclasses.replace(recommend.recommend(model, VNNI), steps=steps, skipped=[])

    def int8_slower(models, feeds, **_) -> list[float]:  # smoothing costs nothing, INT8 looks slower
        return [2.0 if any(n.op_type == "DynamicQuantizeLinear" for n in m.graph) else 1.0 for m in models]

    proven = recommend.prove(model, rec, calibration=ArrayReader(inputs(0)), timer=int8_slower)
    assert proven.steps == []
    assert proven.skipped == ["smooth:alpha=0.5: left out, it prepares for quantize-dynamic or quantize-static and none was kept"]
    assert [c.spec for c in proven.proof.dropped] == ["quantize-dynamic"]


def test_preparations_are_kept_when_their_int8_step_follows():
    steps = [recommend.Step(s, "") for s in ("smooth", "fuse", "quantize-dynamic", "split-outliers")]
    assert [s.spec for s in recommend.unserved_preparations(steps)] == ["split-outliers"]


def test_weights_listed_as_inputs_are_made_constants_first(mlp_model):
    """Weights a caller could override (IR < 4, keep_initializers_as_inputs=True): ORT neither folds nor pre-packs
    them and no pass may rewrite them, so the plan starts by making them constants; a model without them does not."""
    from ..passes.test_remove_initializer_inputs import WEIGHTS_AS_INPUTS

    exposed = recommend.recommend(ir.from_onnx_text(WEIGHTS_AS_INPUTS), VNNI)
    assert exposed.steps[0].spec == "remove-initializer-inputs"
    assert exposed.steps[0].reason.startswith("exact: 3 weights are also graph inputs")
    assert [s.spec for s in exposed.steps[1:]] == [s.spec for s in recommend.recommend(mlp_model, VNNI).steps]
    assert "remove-initializer-inputs" not in [s.spec for s in recommend.recommend(mlp_model, VNNI).steps]


def _in_float16(model: ir.Model) -> ir.Model:
    """``model`` with its weights, inputs, outputs and values in float16, as ``model.half()`` exports it."""
    for value in model.graph.initializers.values():
        value.const_value = ir.tensor(value.const_value.numpy().astype(np.float16), name=value.name)
        value.dtype = ir.DataType.FLOAT16
    for value in (*model.graph.inputs, *model.graph.outputs, *(v for node in model.graph for v in node.outputs)):
        if value.dtype == ir.DataType.FLOAT:
            value.dtype = ir.DataType.FLOAT16
    return model


def half_costs(models, feeds, **_) -> list[float]:
    """A stand-in latency: float weights count once, float16 ones twice (the CPU casts around them)."""
    half = [sum(v.const_value.size for v in m.graph.initializers.values() if v.const_value.dtype == ir.DataType.FLOAT16)
            for m in models]
    return [weights + 2.0 * count for weights, count in zip(float_weights(models, feeds), half)]


def test_a_float16_model_is_upcast_first_and_then_quantized(mlp_model):
    """The INT8 quantizers refuse a model that computes in float16: the plan starts by making it float32 inside."""
    half = _in_float16(io.clone(mlp_model))
    plan = recommend.recommend(half, VNNI)
    assert plan.steps[0].spec == "upcast" and plan.steps[0].reason.startswith("exact: the model computes in float16 (3 weights)")
    assert "upcast" not in [s.spec for s in recommend.recommend(mlp_model, VNNI).steps]
    rec = recommend.prove(half, plan, timer=half_costs)
    as_float32 = recommend.prove(mlp_model, recommend.recommend(mlp_model, VNNI), timer=half_costs)
    assert [s.spec for s in rec.steps] == ["upcast", *(s.spec for s in as_float32.steps)]
    assert rec.steps[-1].spec == "quantize-dynamic"


def test_an_encoder_after_onnxruntimes_optimizer_is_an_encoder_with_its_fused_norms_counted():
    fused = """<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
enc (float[N, 8, 16] x, int32[N] lengths) => (float[N, 8, 16] y) <float[16, 48] w = {0.0}, float[16] g = {0.0}> {
  a = com.microsoft.Attention <num_heads = 2> (x, w, , lengths)
  y = com.microsoft.SkipLayerNormalization (a, x, g)
}"""
    family, evidence = recommend.detect_family(ir.from_onnx_text(fused))
    assert family == "transformer-encoder" and evidence[1] == "normalisation ops x1"
