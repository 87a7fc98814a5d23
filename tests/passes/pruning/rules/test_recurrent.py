"""LSTM and GRU hidden units: a dead unit of PyTorch's exported layer goes exactly, from both exporters, one and two directions."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import io
from onnxcompress.models import export
from onnxcompress.passes import FoldConstants
from onnxcompress.passes.pruning import PruneChannels

pytestmark = pytest.mark.slow  # PyTorch exports

HIDDEN, DEAD = 32, 3


def _export(tmp_path, dynamo: bool, bidirectional: bool, kind: str = "LSTM"):
    """Embeddings into a 2-layer LSTM (or GRU), its outputs averaged into 8 scores; hidden unit 3 of the first layer is
    read by zeros only (its recurrent weight columns and the second layer's input columns)."""
    import torch

    torch.manual_seed(0)

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            self.lstm = getattr(torch.nn, kind)(16, HIDDEN, num_layers=2, batch_first=True, bidirectional=bidirectional)
            self.head = torch.nn.Linear(HIDDEN * (1 + bidirectional), 8)

        def forward(self, ids):
            y, _ = self.lstm(self.embed(ids))
            return self.head(y.mean(1))

    model = Tagger().eval()
    directions = ("", "_reverse") if bidirectional else ("",)
    with torch.no_grad():
        for suffix in directions:
            getattr(model.lstm, f"weight_hh_l0{suffix}")[:, DEAD] = 0
            getattr(model.lstm, f"weight_ih_l1{suffix}")[:, [DEAD + HIDDEN * d for d in range(len(directions))]] = 0
    path = export.export_onnx(model, tmp_path / f"{kind}_{dynamo}_{bidirectional}.onnx", (torch.randint(0, 50, (2, 7)),),
                              input_names=["ids"], output_names=["scores"], dynamo=dynamo, dynamic_axes={"ids": {1: "sequence"}})
    return io.load(path)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_dead_hidden_unit_goes_exactly(tmp_path, assert_exact_rewrite, dynamo, bidirectional, kind):
    before = _export(tmp_path, dynamo, bidirectional, kind)
    FoldConstants()(before)  # the dynamo export's gate blocks, computed from each weight
    after = io.clone(before)
    run = PruneChannels(dead_only=True)(after)
    assert [g["removed"] for g in run.details["groups"] if g["removed"]] == [1]
    layers = [n for n in after.graph if n.op_type == kind]
    assert [n.attributes.get_int("hidden_size") for n in layers] == [HIDDEN - 1, HIDDEN]
    feeds = {"ids": np.random.default_rng(0).integers(0, 50, (3, 7))}  # the dynamo export of both directions fixes the length
    assert_exact_rewrite(before, after, feeds)
