"""The MiniLM export reproduces sentence-transformers, and the tokenizer pads and truncates."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import checks, io, runtime
from onnxcompress.models import corpus, minilm


@pytest.fixture(scope="module")
def reference_embeddings():
    """sentence-transformers' own embeddings of the sentences in ``minilm_feeds`` (same 32-token cut)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm.model_path()), device="cpu")
    model.max_seq_length = 32
    return model.encode(corpus.sentences(8, seed=0), convert_to_numpy=True)


@pytest.mark.parametrize("optimization", ["disable", "all"])
def test_export_matches_sentence_transformers(minilm_onnx, minilm_feeds, reference_embeddings, optimization):
    outputs = runtime.run(runtime.session(minilm_onnx, optimization=optimization), minilm_feeds)
    embedding = outputs["sentence_embedding"]
    assert embedding.shape == (8, minilm.HIDDEN_SIZE)
    assert outputs["last_hidden_state"].shape == (8, 32, minilm.HIDDEN_SIZE)
    cosine = np.sum(embedding * reference_embeddings, axis=1) / (
        np.linalg.norm(embedding, axis=1) * np.linalg.norm(reference_embeddings, axis=1)
    )
    assert cosine.min() > 0.9999


def test_export_signature_is_dynamic(minilm_onnx):
    model = io.load(minilm_onnx)
    assert [v.name for v in model.graph.inputs] == list(minilm.INPUT_NAMES)
    assert [v.name for v in model.graph.outputs] == list(minilm.OUTPUT_NAMES)
    assert model.opset_imports[""] == 17
    for value in model.graph.inputs:
        assert not any(isinstance(dim, int) for dim in value.shape)
    assert not checks.graph_problems(model)


def test_export_runs_other_batch_and_length(minilm_onnx):
    feeds = minilm.tokenize(corpus.sentences(3, seed=5), max_length=11)
    outputs = runtime.run(runtime.session(minilm_onnx), feeds)
    assert outputs["last_hidden_state"].shape == (3, feeds["input_ids"].shape[1], minilm.HIDDEN_SIZE)
    np.testing.assert_allclose(np.linalg.norm(outputs["sentence_embedding"], axis=1), 1.0, atol=1e-5)


def test_num_layers_keeps_first_layers():
    encoder = minilm.load_encoder(num_layers=2)
    assert len(encoder.bert.encoder.layer) == 2
    with pytest.raises(ValueError):
        minilm.load_encoder(num_layers=7)


def test_tokenize_pads_to_longest_and_marks_padding():
    feeds = minilm.tokenize(["Short one here.", "A somewhat longer sentence with more words in it."])
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids.dtype == np.int64 and ids.shape == mask.shape == feeds["token_type_ids"].shape
    assert mask[1].all() and not mask[0].all()
    assert (ids[0][mask[0] == 0] == 0).all()
    assert ids[0, 0] == ids[1, 0] == 101  # [CLS]
    assert not feeds["token_type_ids"].any()


def test_tokenize_truncates_and_pads_to_fixed_length():
    long = " ".join(["word"] * 200)
    assert minilm.tokenize([long], max_length=20)["input_ids"].shape == (1, 20)
    fixed = minilm.tokenize([long, "Tiny."], pad_to=12)
    assert fixed["input_ids"].shape == (2, 12)
    assert fixed["input_ids"][0, -1] == 102  # [SEP] survives truncation
    assert fixed["attention_mask"][1].sum() < 12
