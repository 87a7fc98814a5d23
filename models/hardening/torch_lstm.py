"""PyTorch's own ``nn.LSTM`` as people write a sentence encoder: batch-first, bidirectional, mean-pooled.

Token embeddings (d = 128) into a 2-layer bidirectional LSTM of 256 per direction, masked mean pooling
of its outputs on top, seeded random weights. Both exporters write ONNX ``LSTM`` nodes, the dynamo one
with each weight cut into its gate blocks and put together again in ONNX's order. Inputs are tokenised
corpus sentences; fidelity is nearest-neighbour agreement and mean cosine of the sentence embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

from onnxcompress.models.hardening import text
from onnxcompress.models.hardening.entry import Entry
from onnxcompress.models.hardening.pooling import mean_pool
from onnxcompress.models.hardening.torch_encoder import sentence_encoder_entries

EMBEDDING, HIDDEN, LAYERS = 128, 256, 2


class LstmEncoder(nn.Module):
    """Embeddings -> bidirectional ``nn.LSTM`` (batch-first) -> masked mean over tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(text.VOCAB_SIZE, EMBEDDING)
        self.lstm = nn.LSTM(EMBEDDING, HIDDEN, LAYERS, batch_first=True, bidirectional=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, 2 * HIDDEN]`` sentence embeddings."""
        hidden, _ = self.lstm(self.tokens(input_ids))
        return mean_pool(hidden, attention_mask)


ENTRIES: list[Entry] = sentence_encoder_entries(
    "torch-lstm", "torch.nn.LSTM (2 layers of 256, bidirectional, batch-first, mean-pooled)", LstmEncoder)
