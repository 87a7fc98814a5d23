"""A cached decoder's next generation step: its feeds, and ``recommend`` keeping no step that makes it slower."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import generation, recommend, runtime, verify
from onnxcompress.calibration import ArrayReader
from onnxcompress.cpu import CpuFeatures

VOCAB, WIDTH = 16, 8


def _values(count: int, seed: int) -> str:
    return ", ".join(f"{v:.3f}" for v in np.random.default_rng(seed).uniform(-1, 1, count))


DECODER = f"""
<ir_version: 8, opset_import: ["" : 17]>
step (int64[B, S] input_ids, int64[B, T] attention_mask, int64[B, S] position_ids, float[B, P, {WIDTH}] past_key_values.0.key)
    => (float[B, S, {VOCAB}] logits, float[B, T, {WIDTH}] present.0.key)
    <float[{VOCAB}, {WIDTH}] table = {{{_values(VOCAB * WIDTH, 0)}}}, float[{WIDTH}, {VOCAB}] head = {{{_values(WIDTH * VOCAB, 1)}}}> {{
  tokens = Gather(table, input_ids)
  present.0.key = Concat <axis = 1> (past_key_values.0.key, tokens)
  context = ReduceMean <axes = [1]> (present.0.key)
  mixed = Add(tokens, context)
  logits = MatMul(mixed, head)
}}
"""


def decoder(text: str = DECODER) -> ir.Model:
    """A one-layer stand-in for a cached decoder: each token mixed with the mean of the cache and itself."""
    model = ir.from_onnx_text(text.replace("past_key_values.0.key", "past_key_values_0_key").replace("present.0.key", "present_0_key"))
    model.graph.inputs[3].name, model.graph.outputs[1].name = "past_key_values.0.key", "present.0.key"
    model.graph.inputs[1].shape = ir.Shape(["B", "P + S"])
    return model


MERGED = f"""
<ir_version: 8, opset_import: ["" : 17]>
merged (int64[B, S] input_ids, float[B, P, {WIDTH}] past_key_values_0_key, bool[1] use_cache_branch)
    => (float[B, S, {VOCAB}] logits, float[B, T, {WIDTH}] present_0_key)
    <float[{VOCAB}, {WIDTH}] table = {{{_values(VOCAB * WIDTH, 0)}}}, float[{WIDTH}, {VOCAB}] head = {{{_values(WIDTH * VOCAB, 1)}}}> {{
  tokens = Gather(table, input_ids)
  logits, present_0_key = If (use_cache_branch) <
    then_branch = cached () => (float[B, S, {VOCAB}] cached_logits, float[B, T, {WIDTH}] cached_present) {{
      cached_present = Concat <axis = 1> (past_key_values_0_key, tokens)
      cached_context = ReduceMean <axes = [1]> (cached_present)
      cached_mixed = Add(tokens, cached_context)
      cached_logits = MatMul(cached_mixed, head)
    }},
    else_branch = fresh () => (float[B, S, {VOCAB}] fresh_logits, float[B, S, {WIDTH}] fresh_present) {{
      fresh_present = Identity(tokens)
      fresh_context = ReduceMean <axes = [1]> (tokens)
      fresh_mixed = Add(tokens, fresh_context)
      fresh_logits = MatMul(fresh_mixed, head)
    }}
  >
}}
"""


def merged_decoder() -> ir.Model:
    """``decoder()`` as Optimum merges one: its first step and its later steps in the two branches of an ``If``."""
    model = ir.from_onnx_text(MERGED)
    model.graph.inputs[1].name, model.graph.outputs[1].name = "past_key_values.0.key", "present.0.key"
    return model


def break_first_branch(model: ir.Model) -> ir.Model:
    """``model`` (a ``merged_decoder()``) whose branch without a cache mixes nothing in: its cache branch is intact."""
    fresh = next(node for node in model.graph if node.op_type == "If").attributes["else_branch"].as_graph()
    mixed = next(node for node in fresh if node.op_type == "Add")
    mixed.replace_input_with(1, mixed.inputs[0])
    return model


def forget_cache(model: ir.Model) -> ir.Model:
    """``model`` (a ``decoder()``) mixing each token with the mean of the new tokens only, not of the cache and them:
    a first step, its cache empty, cannot tell it from the decoder."""
    mean = next(node for node in model.graph if node.op_type == "ReduceMean")
    mean.replace_input_with(0, mean.inputs[0].producer().inputs[1])
    return model


def first_steps(samples: int, length: int = 5) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(2).integers(0, VOCAB, (samples, length))
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.tile(np.arange(length), (samples, 1)),
            "past_key_values.0.key": np.zeros((samples, 0, WIDTH), np.float32)}


def test_the_next_step_is_one_token_at_the_next_position_fed_the_caches_the_first_returned():
    model = decoder()
    assert generation.cache_outputs(model) == {"past_key_values.0.key": "present.0.key"}
    first = first_steps(3)
    step = generation.next_step_feeds(model, first)
    ran = runtime.run(model, {k: v[:1] for k, v in first.items()})
    picked = ran["logits"][0, -1].argmax()  # the token greedy generation feeds next
    assert picked != first["input_ids"][0, -1] and step["input_ids"].tolist() == [[picked]]
    assert step["attention_mask"].shape == (1, 6) and step["position_ids"].tolist() == [[5]]
    np.testing.assert_array_equal(step["past_key_values.0.key"], ran["present.0.key"])
    for last in ("[1]", ""):  # scores for the last position only, as some exports give them: [B, 1, V] or [B, V]
        last_only = _last_position_scores(last)
        assert runtime.run(last_only, first)["logits"].shape == ((3, 1, VOCAB) if last else (3, VOCAB))
        assert generation.next_step_feeds(last_only, first)["input_ids"].tolist() == [[picked]]
    unscored = decoder()
    unscored.graph.outputs[0].name = "states"  # no class scores to pick a token by: the last token again
    np.testing.assert_array_equal(generation.next_step_feeds(unscored, first)["input_ids"], first["input_ids"][:1, -1:])
    assert runtime.run(model, step)["present.0.key"].shape == (1, 6, WIDTH)


def _last_position_scores(index: str) -> ir.Model:
    """``decoder()`` giving the scores of the last position only, picked by a Gather of index shape ``index``."""
    text = DECODER.replace(f"float[B, S, {VOCAB}] logits", "float logits")
    text = text.replace("logits = MatMul(mixed, head)", "scores = MatMul(mixed, head)\n  logits = Gather <axis = 1> (scores, last)")
    return decoder(text.replace("> {", f", int64{index} last = {{-1}}> {{", 1))


def test_a_decoder_that_forgets_its_cache_is_told_apart_only_on_the_next_step():
    model, forgetful, first = decoder(), forget_cache(decoder()), first_steps(1)
    np.testing.assert_array_equal(runtime.run(forgetful, first)["logits"], runtime.run(model, first)["logits"])
    ((suffix, step, expected),) = generation.expected_beside(model, first)
    assert suffix == " (next token)" and step["attention_mask"].shape == (1, 6) and set(expected) == {"logits", "present.0.key"}
    assert not np.allclose(runtime.run(forgetful, step)["logits"], expected["logits"], atol=1e-3)


@pytest.mark.parametrize("branch", [False, True])
def test_a_merged_decoder_is_checked_through_both_branches(branch):
    # Optimum's merged decoders: a first step checked alone left the cache branch unchecked, synthetic inputs (the
    # cache branch, caches filled) the first branch
    model = merged_decoder()
    feeds = {"input_ids": np.array([[1, 2, 3], [4, 5, 6]]), "past_key_values.0.key": np.ones((2, 4, WIDTH), np.float32),
             "use_cache_branch": np.array([branch])}
    beside = dict(generation.checks_beside(model, feeds))
    assert list(beside) == [" (next token)", " (no-cache branch)"] if branch else [" (next token)"]
    step = beside[" (next token)"]  # through the cache branch, fed the caches the given step returned
    ran = runtime.run(model, {k: v[:1] if k != "use_cache_branch" else v for k, v in feeds.items()})
    np.testing.assert_array_equal(step["past_key_values.0.key"], ran["present.0.key"])
    assert step["use_cache_branch"].tolist() == [True] and step["input_ids"].tolist() == [[ran["logits"][0, -1].argmax()]]
    if branch:
        other = beside[" (no-cache branch)"]
        assert other["use_cache_branch"].tolist() == [False] and all(np.array_equal(other[k], feeds[k]) for k in ("input_ids", "past_key_values.0.key"))
    assert [s for s, _ in generation.runs_beside(model, [feeds])] == [" (no-cache branch)"] * branch + [" (next token)"] * 2  # one per sample
    checked = verify.verify_models(model, break_first_branch(merged_decoder()), feeds)
    failed = [o.name for o in checked.outputs if not o.passed]
    assert failed == (["logits (no-cache branch)"] if branch else ["logits"])


def test_a_merged_decoders_other_branch_is_run_once_for_what_it_is_expected_to_give(monkeypatch):
    # it was run once to learn that it runs and again for its expected outputs
    model, runs = merged_decoder(), []
    feeds = {"input_ids": np.array([[1, 2, 3]]), "past_key_values.0.key": np.ones((1, 4, WIDTH), np.float32),
             "use_cache_branch": np.array([True])}
    run = runtime.run
    monkeypatch.setattr(generation.runtime, "run", lambda source, given, **kw: runs.append(given["use_cache_branch"].tolist()) or run(source, given, **kw))
    beside = {suffix: (step, expected) for suffix, step, expected in generation.expected_beside(model, feeds)}
    assert runs.count([False]) == 1
    other, expected = beside[" (no-cache branch)"]
    monkeypatch.setattr(generation.runtime, "run", run)
    np.testing.assert_array_equal(expected["logits"], runtime.run(model, other, optimization="disable")["logits"])


def _unchecked(model: ir.Model, feeds: dict[str, np.ndarray]) -> list[str]:
    return generation.unchecked_beside(model, feeds, [suffix for suffix, _ in generation.checks_beside(model, feeds)])


def test_nothing_is_run_beside_feeds_the_model_cannot_take_and_the_check_says_so():
    # a decoder exported with a fixed sequence length cannot take one token: the pipeline failed in ONNX Runtime
    fixed = decoder()
    fixed.graph.inputs[0].shape, fixed.graph.inputs[2].shape = ir.Shape([1, 5]), ir.Shape([1, 5])
    assert generation.checks_beside(fixed, first_steps(1)) == []
    (note,) = _unchecked(fixed, first_steps(1))  # it went unchecked without a word
    assert note.startswith("the next token is not checked") and _unchecked(decoder(), first_steps(1)) == []
    # a branch that cannot take the sizes the other took
    switch = ir.from_onnx_text(f"""
<ir_version: 8, opset_import: ["" : 17]>
g (bool[1] use_cache_branch, float[N, M] x) => (float[N, M] y) <float[4, 4] w = {{{_values(16, 3)}}}> {{
  y = If (use_cache_branch) <then_branch = a () => (float[N, M] ya) {{ ya = Identity(x) }},
                             else_branch = b () => (float[N, M] yb) {{ yb = MatMul(x, w) }}>
}}""")
    feeds = {"use_cache_branch": np.array([True]), "x": np.ones((2, 3), np.float32)}
    assert generation.checks_beside(switch, feeds) == []
    (note,) = _unchecked(switch, feeds)
    assert note.startswith("the branch without the cache is not checked")
    runnable = {**feeds, "x": np.ones((2, 4), np.float32)}
    assert [s for s, _ in generation.checks_beside(switch, runnable)] == [" (no-cache branch)"] and _unchecked(switch, runnable) == []
    assert _unchecked(switch, {**feeds, "use_cache_branch": np.array([False])}) == []  # the branch without the cache is the one fed


def test_a_filled_cache_goes_on_from_where_it_ends_and_only_a_cached_decoder_has_a_next_step(mlp_model):
    # synthetic inputs fill the caches (128 positions) and feed 128 new tokens: recommend timed only that, never the
    # one token generation repeats
    model = decoder()
    filled = {**first_steps(1), "attention_mask": np.ones((1, 7), np.int64), "past_key_values.0.key": np.ones((1, 2, WIDTH), np.float32)}
    step = generation.next_step_feeds(model, filled)
    assert step["past_key_values.0.key"].shape == (1, 7, WIDTH) and step["attention_mask"].shape == (1, 8)
    assert step["position_ids"].tolist() == [[5]] and runtime.run(model, step)["present.0.key"].shape == (1, 8, WIDTH)
    assert generation.cache_outputs(mlp_model) == {} and generation.next_step_feeds(mlp_model, runtime.synthetic_inputs(mlp_model)) is None


def _quantized(model: ir.Model) -> bool:
    return any(node.op_type.startswith("DynamicQuantize") or "Integer" in node.op_type for node in ir.traversal.RecursiveGraphIterator(model.graph))


@pytest.mark.parametrize("calibrated", [True, False])  # without data, synthetic inputs fill the caches
@pytest.mark.parametrize("next_token_slower", [True, False])
def test_recommend_keeps_no_step_that_makes_a_generation_step_slower(next_token_slower, calibrated):
    # a tiny cached Llama: dynamic INT8 ran its prompt 1.42x faster and each next token 0.81x as fast; it was kept
    def timer(models, feeds, full=False) -> list[float]:
        next_token = feeds["input_ids"].shape[1] == 1
        return [(3.0 if next_token and next_token_slower else 0.5) if _quantized(m) else 1.0 for m in models]

    vnni = CpuFeatures("x86_64", frozenset({"avx2", "avx512_vnni"}))
    plan = recommend.Recommendation("decoder", [], vnni, [recommend.Step("quantize-dynamic", "lossy")], [])
    rec = recommend.prove(decoder(), plan, calibration=ArrayReader(first_steps(64)) if calibrated else None, timer=timer)
    (check,) = rec.proof.checks
    if next_token_slower:
        assert not check.kept and check.reason.startswith("made a generation step (one token fed its caches) slower: 1 ms -> 3 ms")
        assert rec.steps == []
    else:
        assert check.kept and [s.spec for s in rec.steps] == ["quantize-dynamic"]
        assert rec.proof.latency_ms["input (next token)"] / rec.proof.latency_ms["chain (next token)"] == 2.0
    assert "; and a generation step (one token fed its caches)" in rec.proof.latency_on


@pytest.mark.parametrize("prompt_slower", [True, False])
def test_recommend_keeps_no_step_that_makes_a_merged_decoders_other_branch_slower(prompt_slower):
    # synthetic inputs feed a merged decoder's cache branch: the branch reading a prompt was never timed
    def timer(models, feeds, full=False) -> list[float]:
        prompt = not feeds["use_cache_branch"].all()
        return [(3.0 if prompt and prompt_slower else 0.5) if _quantized(m) else 1.0 for m in models]

    vnni = CpuFeatures("x86_64", frozenset({"avx2", "avx512_vnni"}))
    plan = recommend.Recommendation("decoder", [], vnni, [recommend.Step("quantize-dynamic", "lossy")], [])
    rec = recommend.prove(merged_decoder(), plan, timer=timer)
    (check,) = rec.proof.checks
    assert "; and the branch without the cache (a prompt's first step)" in rec.proof.latency_on
    if prompt_slower:
        assert not check.kept and check.reason == "made the branch without the cache (a prompt's first step) slower: 1 ms -> 3 ms"
    else:
        assert check.kept and rec.proof.latency_ms["input (no-cache branch)"] / rec.proof.latency_ms["chain (no-cache branch)"] == 2.0
