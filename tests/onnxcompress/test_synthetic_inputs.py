"""Synthetic inputs drive any model: every type, branch selectors, loops, state, argument inputs, realistic sizes.

The models are the shapes of real ones (a voice detector picking its branch by sample rate, a strided
CNN with dynamic height and width, a recurrent cell) written as ONNX text; each runs through
``runtime.run``, and the branch model through ``bench``, ``verify`` and ``run`` without ``--inputs``.
"""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime, synthetic_inputs
from onnxcompress.cli import main
from onnxcompress.errors import UsageError

SAMPLE_RATE_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
vad (float[N, T] audio, int64 sr) => (float[N, W] y) {
  rate16 = Constant <value = int64 {16000}> ()
  rate8 = Constant <value = int64 {8000}> ()
  is16k = Equal(sr, rate16)
  y = If (is16k) <
    then_branch = wide () => (float[N, W] a) {
      s16 = Constant <value = int64[3] {0, -1, 16}> ()
      f16 = Reshape(audio, s16)
      a = ReduceMean <axes = [2], keepdims = 0> (f16)
    },
    else_branch = narrow () => (float[N, W] b) {
      is8k = Equal(sr, rate8)
      b = If (is8k) <
        then_branch = eight () => (float[N, W] c) {
          s8 = Constant <value = int64[3] {0, -1, 8}> ()
          f8 = Reshape(audio, s8)
          c = ReduceMean <axes = [2], keepdims = 0> (f8)
        },
        else_branch = unsupported () => (float[N, W] d) {
          bad = Constant <value = int64[2] {7, -1}> ()
          d = Reshape(audio, bad)
        }
      >
    }
  >
}
"""

UNGUESSABLE_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
pick (float[N, T] x, int64 k) => (float[N, T] y) {
  shape = Shape(x)
  one = Constant <value = int64 {1}> ()
  length = Gather(shape, one)
  same = Equal(k, length)
  y = If (same) <
    then_branch = keep () => (float[N, T] a) { a = Identity(x) },
    else_branch = fail () => (float[N, T] b) {
      bad = Constant <value = int64[2] {7, -1}> ()
      b = Reshape(x, bad)
    }
  >
}
"""

LOOP_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
count (int64 trips, bool keep_going, float[4] start) => (float[4] total) {
  total = Loop (trips, keep_going, start) <
    body = step (int64 i, bool cond, float[4] acc) => (bool cond_out, float[4] acc_out) {
      cond_out = Identity(cond)
      one = Constant <value = float {1.0}> ()
      acc_out = Add(acc, one)
    }
  >
}
"""

STRIDED_CNN_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
cnn (float[N, 3, H, W] image) => (float[N, 4] y) {
  s1 = Constant <value = int64[4] {4, 3, 3, 3}> ()
  w1 = ConstantOfShape <value = float[1] {0.1}> (s1)
  s2 = Constant <value = int64[4] {4, 4, 3, 3}> ()
  w2 = ConstantOfShape <value = float[1] {0.1}> (s2)
  a = Conv <strides = [3, 2], pads = [1, 1, 1, 1]> (image, w1)
  b = Conv <strides = [3, 2], pads = [1, 1, 1, 1]> (a, w2)
  g = GlobalAveragePool(b)
  y = Flatten(g)
}
"""

TYPES_TEXT = """
<ir_version: 9, opset_import: ["" : 20]>
types (float16[2] half, bfloat16[2] brain, double[2] wide, int8[2] small, uint64[2] big, bool[2] flag, string[2] word)
    => (float[2] a, float[2] b, float[2] c, float[2] d, float[2] e, float[2] f, string[2] g) {
  a = Cast <to = 1> (half)
  b = Cast <to = 1> (brain)
  c = Cast <to = 1> (wide)
  d = Cast <to = 1> (small)
  e = Cast <to = 1> (big)
  f = Cast <to = 1> (flag)
  g = StringConcat(word, word)
}
"""

CONTAINERS_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
containers (seq(float[N]) items, optional(float[3]) maybe) => (int64 n, bool present) {
  n = SequenceLength(items)
  present = OptionalHasElement(maybe)
}
"""

STATE_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
cell (float[N, 4] x, float[1, N, 4] carry, float[2, N, 4] h0) => (float[1, N, 4] carry_out, float[2, N, 4] hn) {
  carry_out = Add(carry, x)
  hn = Add(h0, x)
}
"""

TOKENS_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
emb (int64[B, S] input_ids, int64[B, S] attention_mask, int64[B, S] token_type_ids) => (float[B, S, 4] y)
    <float[50, 4] table = {0.0}> {
  i32 = Cast <to = 6> (input_ids)
  y = Gather(table, i32)
}
"""

# One op per model whose second input is an argument (a shape, axes, sizes, indices...): random values fail them.
ARGUMENT_MODELS = {
    "Reshape shape": "(float[2, 3, 4] x, int64[2] s) => (float[2, 12] y) { y = Reshape(x, s) }",
    "Expand shape": "(float[3, 1] x, int64[2] s) => (float[3, 1] y) { y = Expand(x, s) }",
    "Range": "(int64 a, int64 b, int64 c) => (int64[M] y) { y = Range(a, b, c) }",
    "Slice": "(float[5, 6] x, int64[2] s, int64[2] e, int64[2] a, int64[2] p) => (float[5, 6] y) { y = Slice(x, s, e, a, p) }",
    "Resize scales": "(float[1, 1, 4, 4] x, float[4] scales) => (float[1, 1, 4, 4] y) { y = Resize(x, , scales) }",
    "Squeeze axes": "(float[3, 1, 4, 1] x, int64[2] a) => (float[3, 4] y) { y = Squeeze(x, a) }",
    "ReduceSum axes": "(float[3, 4] x, int64[1] a) => (float[1, 4] y) { y = ReduceSum(x, a) }",
    "Resize sizes on some axes": "(float[1, 1, 4, 4] x, int64[2] sizes) => (float[1, 1, 4, 4] y) "
                                 "{ y = Resize <axes = [2, 3]> (x, , , sizes) }",
    "RNN sequence lengths": "(float[5, 2, 3] x, float[1, 4, 3] w, float[1, 4, 4] r, int32[2] n) => (float[1, 2, 4] h) "
                            "{ _y, h = RNN <hidden_size = 4> (x, w, r, , n) }",
    "Split sizes": "(float[7, 2] x, int64[3] s) => (float[A, 2] p, float[B, 2] q, float[C, 2] r) { p, q, r = Split(x, s) }",
    "integer Div": "(int32[4] x, int32[4] d) => (int32[4] y) { y = Div(x, d) }",
    "Gather indices": "(float[3, 4] x, int64[20] i) => (float[20, 4] y) { y = Gather(x, i) }",
    "GatherND indices": "(float[2, 3] x, int64[5, 2] i) => (float[5] y) { y = GatherND(x, i) }",
    "TopK k": "(float[3, 4] x, int64[1] k) => (float[3, K] v, int64[3, K] i) { v, i = TopK(x, k) }",
    "loss target": "(float[3, 5, 2] x, int64[3, 2] t) => (float l) { l = NegativeLogLikelihoodLoss(x, t) }",
    "NonMaxSuppression": "(float[1, 4, 4] b, float[1, 1, 4] s, int64[1] m, float[1] iou, float[1] t) => (int64[K, 3] y) "
                         "{ y = NonMaxSuppression(b, s, m, iou, t) }",
}


def _model(text: str) -> ir.Model:
    return ir.from_onnx_text(text)


@pytest.fixture
def sample_rate_path(tmp_path):
    """The voice-detector-like model saved to a file."""
    return io.save(_model(SAMPLE_RATE_TEXT), tmp_path / "vad.onnx")


def test_a_sample_rate_takes_a_value_the_graph_compares_it_with():
    model = _model(SAMPLE_RATE_TEXT)
    feeds = runtime.synthetic_inputs(model)
    assert int(feeds["sr"]) in (16000, 8000) and feeds.guesses == []
    assert feeds.dynamic == {"audio": (1, synthetic_inputs.SEQUENCE_LENGTH)}
    width = synthetic_inputs.SEQUENCE_LENGTH // (16 if int(feeds["sr"]) == 16000 else 8)
    assert runtime.run(model, feeds)["y"].shape == (1, width)


def test_the_branch_model_goes_through_bench_verify_and_run_without_inputs(sample_rate_path, tmp_path, capsys):
    assert main(["bench", str(sample_rate_path), "--rounds", "1", "--threads", "1"]) == 0
    assert main(["verify", str(sample_rate_path), str(sample_rate_path), "--threads", "1"]) == 0
    out = tmp_path / "out.onnx"
    assert main(["run", str(sample_rate_path), "-o", str(out), "-p", "fold-constants", "-p", "cleanup", "--no-bench"]) == 0
    err = capsys.readouterr().err
    assert err.count(f"--input-shape audio:1,{synthetic_inputs.SEQUENCE_LENGTH}") == 3  # one line per command
    assert out.exists()


def test_an_input_the_graph_says_nothing_about_is_named_in_a_one_line_hint(tmp_path, capsys):
    model = _model(UNGUESSABLE_TEXT)
    feeds = runtime.synthetic_inputs(model)
    assert feeds.guesses == ["k"]
    with pytest.raises(UsageError, match="pass --inputs FILE.npz with a value for 'k'"):
        runtime.run(model, feeds)
    path = io.save(model, tmp_path / "pick.onnx")
    assert main(["bench", str(path), "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert "with a value for 'k'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 2  # shapes + error


def test_arguments_only_real_data_can_give_are_named_as_guesses():
    model = _model('<ir_version: 8, opset_import: ["" : 18]> m (float[1, 4, 6] x, int64[2] image, int64[2] block) '
                   "=> (float[1, 1, H, W] y) { y = Col2Im(x, image, block) }")
    feeds = runtime.synthetic_inputs(model)
    assert feeds.guesses == ["image", "block"]
    assert "with a value for 'image', 'block'" in feeds.fix()


def test_a_failure_after_the_inputs_ran_once_is_the_models():
    model = _model(UNGUESSABLE_TEXT)
    feeds = runtime.synthetic_inputs(model)
    feeds["k"] = np.array(feeds["x"].shape[1])
    runtime.run(model, feeds)
    feeds["k"] = np.array(0)  # as if a pass had broken the branch the inputs take
    with pytest.raises(UsageError) as failure:
        runtime.run(model, feeds)
    assert "failed to run the model" in str(failure.value) and "--inputs" not in str(failure.value)


def test_a_loop_gets_a_small_trip_count_and_runs():
    model = _model(LOOP_TEXT)
    feeds = runtime.synthetic_inputs(model)
    assert 1 <= int(feeds["trips"]) <= 10 and bool(feeds["keep_going"])
    total = runtime.run(model, feeds)["total"]
    np.testing.assert_allclose(total, feeds["start"] + int(feeds["trips"]), rtol=1e-6)


def test_every_feedable_type_gets_values_that_run():
    model = _model(TYPES_TEXT)
    feeds = runtime.synthetic_inputs(model)
    assert feeds["brain"].dtype.name == "bfloat16" and feeds["half"].dtype == np.float16
    assert all(isinstance(w, str) and w.isascii() and w.isalpha() for w in feeds["word"])
    got = runtime.run(model, feeds)
    np.testing.assert_array_equal(got["g"], [w + w for w in feeds["word"]])
    np.testing.assert_allclose(got["b"], feeds["brain"].astype(np.float32))


def test_sub_byte_types_are_refused_in_one_line():
    model = _model('<ir_version: 10, opset_import: ["" : 21]> q (int4[2] x) => (float[2] y) { y = Cast <to = 1> (x) }')
    with pytest.raises(UsageError, match="'x' has type INT4"):
        runtime.synthetic_inputs(model)


def test_sequences_and_optionals_get_values():
    model = _model(CONTAINERS_TEXT)
    feeds = runtime.synthetic_inputs(model, batch=3)
    assert len(feeds["items"]) == synthetic_inputs.SEQUENCE_ITEMS and feeds["items"][0].shape == (3,)
    got = runtime.run(model, feeds)
    assert int(got["n"]) == synthetic_inputs.SEQUENCE_ITEMS and bool(got["present"])


def test_state_is_zeros_with_the_batch_on_its_recurrent_axis():
    feeds = runtime.synthetic_inputs(_model(STATE_TEXT), batch=3)
    assert feeds["carry"].shape == (1, 3, 4) and feeds["h0"].shape == (2, 3, 4)
    assert not feeds["carry"].any() and not feeds["h0"].any() and feeds["x"].any()


def test_image_sides_are_realistic_and_divisible_by_the_stride_of_each_axis():
    model = _model(STRIDED_CNN_TEXT)
    feeds = runtime.synthetic_inputs(model)
    side = synthetic_inputs.IMAGE_SIDE
    expected = (1, 3, -(-side // 9) * 9, -(-side // 4) * 4)  # strides 3x3 on height, 2x2 on width
    assert feeds["image"].shape == expected and feeds.dynamic == {"image": expected}


def test_token_inputs_stay_in_the_vocabulary_and_a_pin_holds_for_every_input_sharing_its_dims():
    feeds = runtime.synthetic_inputs(_model(TOKENS_TEXT), batch=2, shapes={"input_ids": (2, 5)}, seed=1)
    assert feeds["input_ids"].shape == (2, 5) and feeds["input_ids"].max() < 50  # through the Cast
    assert feeds["attention_mask"].shape == (2, 5) and feeds["attention_mask"].min() == 1
    assert feeds["token_type_ids"].shape == (2, 5) and not feeds["token_type_ids"].any()


def test_sequence_dims_default_to_a_realistic_length():
    feeds = runtime.synthetic_inputs(_model(TOKENS_TEXT))
    assert feeds["input_ids"].shape == (1, synthetic_inputs.SEQUENCE_LENGTH)


@pytest.mark.parametrize("name", ARGUMENT_MODELS)
def test_argument_inputs_get_values_their_op_accepts(name):
    text = f'<ir_version: 8, opset_import: ["" : 18]> m {ARGUMENT_MODELS[name]}'
    model = _model(text)
    for seed in range(3):
        feeds = runtime.synthetic_inputs(model, seed=seed)
        assert feeds.guesses == []
        runtime.run(model, feeds)


def test_synthetic_inputs_are_seeded(mlp_model):
    a, b = (runtime.synthetic_inputs(mlp_model, seed=s)["x"] for s in (0, 0))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, runtime.synthetic_inputs(mlp_model, seed=1)["x"])


def test_unknown_pinned_input_is_a_usage_error(mlp_model):
    with pytest.raises(UsageError, match="unknown inputs \\['z'\\]"):
        runtime.synthetic_inputs(mlp_model, shapes={"z": (1,)})


def test_recommend_pins_the_dynamic_dims_its_command_measures_at(tmp_path, capsys):
    path = io.save(_model(STRIDED_CNN_TEXT), tmp_path / "cnn.onnx")
    assert main(["recommend", str(path)]) == 0
    shape = ",".join(map(str, runtime.synthetic_inputs(_model(STRIDED_CNN_TEXT))["image"].shape))
    assert f"--input-shape image:{shape}" in capsys.readouterr().out


def test_run_records_the_shapes_it_used_in_the_report(sample_rate_path, tmp_path):
    report = tmp_path / "report"
    assert main(["run", str(sample_rate_path), "-o", str(tmp_path / "o.onnx"), "-p", "cleanup", "--no-bench", "--report", str(report)]) == 0
    details = json.loads((report / "report.json").read_text())["steps"][0]["details"]
    assert details["input_shapes"] == {"audio": [1, synthetic_inputs.SEQUENCE_LENGTH], "sr": []}


DRAWN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 1000] x, float16[N, 1000] half, int8[N, 1000] i, bool[N, 1000] b, complex64[N, 10] z) => (float[N, 1000] y) {
    y = Identity(x)
}
"""


@pytest.mark.parametrize(("name", "dtype"), [("x", np.float32), ("half", np.float16), ("i", np.int8), ("b", np.bool_), ("z", np.complex64)])
def test_random_inputs_are_drawn_in_their_own_type_without_a_wider_copy(name, dtype):
    import tracemalloc

    model = ir.from_onnx_text(DRAWN)
    model.graph.inputs[:] = [v for v in model.graph.inputs if v.name == name]
    tracemalloc.start()
    try:
        feeds = synthetic_inputs.synthetic_inputs(model, batch=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    array = feeds[name]
    assert array.dtype == dtype and array.shape[0] == 1000
    assert len(np.unique(array)) > 1
    at_most = max(2 * array.nbytes, array.nbytes + 4 * array.size) + 2**16  # float32 at most, plus bookkeeping
    assert peak <= at_most, f"{peak} bytes to draw {array.nbytes}"


def test_inputs_past_the_budget_are_refused_before_drawing(monkeypatch):
    model = ir.from_onnx_text(DRAWN)
    monkeypatch.setattr(io, "array_budget", lambda: 1_000_000)
    with pytest.raises(UsageError, match=r"^synthetic input 'x' of shape \[300,1000\] takes the inputs to \d\.\d MB, more than the 1\.0 MB budget .*--inputs FILE\.npz$"):
        synthetic_inputs.synthetic_inputs(model, batch=300)
    assert set(synthetic_inputs.synthetic_inputs(model, batch=10)) == {"x", "half", "i", "b", "z"}


def test_a_static_signature_reads_nothing_from_the_graph_and_a_dynamic_image_side_does(monkeypatch):
    read = []
    for name in ("_total_strides", "_widest_1d_kernel"):
        monkeypatch.setattr(synthetic_inputs, name, lambda graph, name=name: read.append(name) or ((1, 1) if name == "_total_strides" else 1))
    static = ir.from_onnx_text('<ir_version: 8, opset_import: ["" : 17]> g (float[1, 3, 8, 8] x) => (float[1, 3, 8, 8] y) { y = Relu(x) }')
    assert runtime.input_shapes(static) == {"x": (1, 3, 8, 8)} and read == []
    dynamic = ir.from_onnx_text('<ir_version: 8, opset_import: ["" : 17]> g (float[N, 3, H, W] x) => (float[N, 3, H, W] y) { y = Relu(x) }')
    runtime.input_shapes(dynamic)
    assert read == ["_total_strides"]  # the image sides need the strides, once; nothing needs the kernel width


CACHE_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
step (float[B, S, 8] new, float[B, 2, P, 4] past_key, int64[B, T] attention_mask) => (float[B, 2, T, 4] present) {
  split = Constant <value = int64[4] {0, 0, 2, 4}> ()
  heads = Reshape(new, split)
  perm = Transpose <perm = [0, 2, 1, 3]> (heads)
  cat = Concat <axis = 2> (past_key, perm)
  f = Cast <to = 1> (attention_mask)
  axes = Constant <value = int64[2] {1, 3}> ()
  m = Unsqueeze(f, axes)
  present = Mul(cat, m)
}
"""


def _cache_model() -> ir.Model:
    """A decoder step's cache: 2 heads (as few channels as an image has) and a mask over ``P + S`` positions."""
    model = _model(CACHE_TEXT)
    model.graph.inputs[2].shape = ir.Shape(["B", "P + S"])
    return model


def test_a_cache_is_no_image_and_a_dim_named_by_arithmetic_is_its_result():
    model = _cache_model()
    feeds = runtime.synthetic_inputs(model)
    length = synthetic_inputs.SEQUENCE_LENGTH
    assert feeds["past_key"].shape == (1, 2, length, 4) and not feeds["past_key"].any()
    assert feeds["attention_mask"].shape == (1, 2 * length)
    assert runtime.run(model, feeds)["present"].shape == (1, 2, 2 * length, 4)
    pinned = runtime.synthetic_inputs(model, shapes={"past_key": (2, 2, 5, 4), "new": (2, 3, 8)})
    assert pinned["attention_mask"].shape == (2, 8)


def test_a_cache_starts_empty_with_the_batch_on_its_batch_axis():
    past, mask = _cache_model().graph.inputs[1:]
    assert synthetic_inputs.starting_state(past, 3).shape == (3, 2, 0, 4)
    assert synthetic_inputs.starting_state(mask, 3) is None


def test_a_merged_decoders_switch_starts_false_in_its_own_shape():
    # text calibration gave use_cache_branch [1] a batch axis ([32] falses): the model then read as one of a fixed batch of 1
    switch = ir.Value(name="use_cache_branch", shape=ir.Shape([1]), type=ir.TensorType(ir.DataType.BOOL))
    state = synthetic_inputs.starting_state(switch, 32)
    assert state.shape == (1,) and state.dtype == np.bool_ and not state.any()


def test_a_dynamic_channel_axis_takes_the_channels_its_conv_reads():
    model = _model("""
        <ir_version: 8, opset_import: ["" : 17]>
        net (float[batch_size, num_channels, height, width] pixel_values) => (float[batch_size, 4, H, W] out)
            <float[4, 1, 3, 3] w = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1,
                                    1, 0, 0, 0, 1, 0, 0, 0, 1}> {
          out = Conv <group = 2, strides = [2, 2]> (pixel_values, w)
        }""")
    feeds = runtime.synthetic_inputs(model)
    assert feeds["pixel_values"].shape == (1, 2, 224, 224)  # 1 channel per group x 2 groups, an image side
    runtime.run(model, feeds)


def test_a_mask_beside_a_cache_named_on_its_own_covers_the_cached_and_the_new_positions():
    # PyTorch's dynamo exporter names the mask's length a dim of its own ("s53"): it got 128 beside a cache of 128
    model = _cache_model()
    model.graph.inputs[2].shape = ir.Shape(["B", "s53"])
    feeds = runtime.synthetic_inputs(model)
    length = synthetic_inputs.SEQUENCE_LENGTH
    assert feeds["attention_mask"].shape == (1, 2 * length)
    runtime.run(model, feeds)
    assert runtime.synthetic_inputs(model, shapes={"past_key": (1, 2, 3, 4)})["attention_mask"].shape == (1, 3 + length)


def test_a_cache_read_by_group_query_attention_gets_the_head_size_its_projection_packs():
    # ORT GenAI's models name the cache's last axis kv_cache_dim: it got 128, and GroupQueryAttention failed (head size 32)
    rng = np.random.default_rng(0)
    model = ir.from_onnx_text("""
<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[B, S, 8] x, float[B, 1, P, kv_cache_dim] past_key_values.0.key, float[B, 1, P, kv_cache_dim] past_key_values.0.value,
   int32[B] seqlens_k, int32[1] total_sequence_length)
  => (float[B, S, 8] y, float[B, 1, T, kv_cache_dim] present.0.key, float[B, 1, T, kv_cache_dim] present.0.value) <float[8, 16] w = {0.0}> {
  qkv = MatMul(x, w)
  y, present.0.key, present.0.value = com.microsoft.GroupQueryAttention <num_heads = 2, kv_num_heads = 1> (qkv, , , past_key_values.0.key, past_key_values.0.value, seqlens_k, total_sequence_length)
}""".replace("past_key_values.0.", "past_").replace("present.0.", "present_"))
    model.graph.initializers["w"].const_value = ir.tensor(rng.standard_normal((8, 16)).astype(np.float32), name="w")
    past = model.graph.inputs[1]
    feeds = runtime.synthetic_inputs(model)
    assert feeds[past.name].shape[-1] == 4  # 16 wide: 2 query heads and 1 key and 1 value head of 4
    assert synthetic_inputs.starting_state(past, 3).shape == (3, 1, 0, 4)
