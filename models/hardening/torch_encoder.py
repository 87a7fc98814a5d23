"""PyTorch's own ``nn.TransformerEncoder`` as people write it: sequence-first (PyTorch's default), GELU.

A sentence encoder of 2 layers, d = 128, 4 heads and a 512-wide FFN over token and learned position
embeddings, masked mean pooling on top, seeded random weights. Its ONNX inputs are batch-first
``input_ids`` and ``attention_mask`` ``[batch, sequence]`` (the module transposes to sequence-first
itself, as the documentation's examples do), so calibration files keep samples on the first axis.
Inputs are tokenised corpus sentences; fidelity is nearest-neighbour agreement and mean cosine of
the sentence embeddings.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from onnxcompress.models.hardening import exported, fidelity, text
from onnxcompress.models.hardening.entry import Entry
from onnxcompress.models.hardening.pooling import mean_pool
from onnxcompress.models.seeding import seeded

D_MODEL, HEADS, LAYERS, FFN = 128, 4, 2, 512
MAX_POSITIONS = 128
SEED = 0


class SentenceEncoder(nn.Module):
    """Embeddings -> ``nn.TransformerEncoder`` (sequence-first) -> masked mean over tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(text.VOCAB_SIZE, D_MODEL)
        self.positions = nn.Embedding(MAX_POSITIONS, D_MODEL)
        layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FFN, dropout=0.0, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, D_MODEL]`` sentence embeddings."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = (self.tokens(input_ids) + self.positions(positions)).transpose(0, 1)
        hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0).transpose(0, 1)
        return mean_pool(hidden, attention_mask)


def sentence_encoder_entries(name: str, source: str, module: type[nn.Module]) -> list[Entry]:
    """Both exports of ``module`` seeded and in eval mode: a sentence encoder taking batch-first ``input_ids`` and
    ``attention_mask`` ``[batch, sequence]`` and giving ``sentence_embedding``, judged on corpus sentences by
    nearest neighbours and mean cosine."""
    return exported.entries(
        name,
        source,
        functools.partial(_seeded, module),
        inputs=text.sentences,
        output_names=["sentence_embedding"],
        fidelity=fidelity.embeddings("sentence_embedding"),
        requires=text.TOKENIZER_PACKAGES,
        dynamic_axes={"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}},
    )


def _seeded(module: type[nn.Module]) -> nn.Module:
    with seeded(SEED):
        return module().eval()


ENTRIES: list[Entry] = sentence_encoder_entries(
    "torch-encoder", "torch.nn.TransformerEncoder (2 layers, d=128, 4 heads, sequence-first, GELU, mean-pooled)", SentenceEncoder)
