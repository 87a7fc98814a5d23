"""PruneChannels on PyTorch's own nn.TransformerEncoder, exported by both exporters.

Sequence-first with a packed ``in_proj`` (rewritten exactly into three projections and a batch-first
head split, ``attention_layout``) and layers deep-copied from one template, so the legacy exporter
shares their identical weights: the pass must remove heads and FFN neurons, must not crash, and must
never return a model with more parameters than it was given.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import checks, io, runtime
from onnxcompress.passes.pruning import PruneChannels
from onnxcompress.stats import parameter_count

pytestmark = pytest.mark.slow  # the dynamo export alone takes ~25 s on a loaded 2-core machine

SEQUENCE = 8


def _export(tmp_path_factory, dynamo: bool, opset: int = 17):
    import torch
    from torch import nn

    from onnxcompress.models import export

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu")
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x.transpose(0, 1)).transpose(0, 1).mean(dim=1)

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / f"encoder_{dynamo}_{opset}.onnx"
    example = (torch.randn(2, SEQUENCE, 32),)
    export.export_onnx(Encoder().eval(), path, example, input_names=["x"], output_names=["y"], dynamo=dynamo, opset=opset)
    return io.load(path)


@pytest.fixture(scope="module", params=[False, True], ids=["legacy", "dynamo"])
def encoder(request, tmp_path_factory):
    """A 2-layer, d=32, 4-head sequence-first nn.TransformerEncoder exported by one exporter."""
    return _export(tmp_path_factory, request.param)


def test_encoder_heads_and_ffn_pruned_never_grows(encoder, check_pruned):
    model = io.clone(encoder)
    feeds = runtime.synthetic_inputs(model, shapes={"x": (2, SEQUENCE, 32)})
    run = PruneChannels(ratio=0.3)(model)
    assert run.modified
    assert parameter_count(model) < parameter_count(encoder)
    removed = [g for g in run.details["groups"] if g["removed"]]
    assert {g["kind"] for g in removed} == {"neurons", "heads"}
    assert all(g["kept"] == 3 for g in removed if g["kind"] == "heads")  # 4 heads -> 3
    assert check_pruned(encoder, model, feeds)["y"].shape == (2, 32)


def test_growth_is_declined(tmp_path_factory, monkeypatch):
    """Without tying equal copies back, the legacy export's shared layer weights would grow the model: declined."""
    from onnxcompress.passes.pruning import prune_channels

    original = _export(tmp_path_factory, dynamo=False)
    monkeypatch.setattr(prune_channels, "retie_unchanged", lambda model, ties: 0)
    model = io.clone(original)
    before = io.to_proto(model).SerializeToString()
    run = PruneChannels(ratio=0.3)(model)
    assert not run.modified
    assert any(n.startswith("declined: the removal would not reduce parameters") for n in run.notes)
    assert io.to_proto(model).SerializeToString() == before


def test_fixed_key_length_export_probed_at_its_calibration_sizes():
    """The corpus's legacy export declares its sequence dynamic but fixes the key length in a constant, so it
    runs at no probe size: with calibration data the pass probes at the data's sizes and removes heads."""
    from onnxcompress.calibration.readers import ArrayReader
    from onnxcompress.models.hardening import ENTRIES

    entry = ENTRIES["torch-encoder-legacy"]
    original = io.load(entry.model())
    model = io.clone(original)
    outcome = PruneChannels(ratio=0.3, accept_loss=True).apply(model, calibration=ArrayReader(entry.feeds("calibration", 16)))
    removed = [g for g in outcome.details["groups"] if g["removed"]]
    assert "heads" in {g["kind"] for g in removed}
    assert parameter_count(outcome.model) < parameter_count(original)
    assert checks.graph_problems(outcome.model) == []  # its attention rewrite once left a Transpose after its reader


def test_opset_23_attention_loses_the_heads_the_unfused_export_loses(tmp_path_factory, check_pruned):
    """At opset 23 the dynamo exporter writes each attention as one ONNX Attention node: the same heads and neurons
    go as from the opset-17 export of the same weights (the Attention rule couples heads across Q, K, V and Y)."""
    unfused, fused = _export(tmp_path_factory, dynamo=True), _export(tmp_path_factory, dynamo=True, opset=23)
    assert "Attention" in {node.op_type for node in fused.graph} and "Attention" not in {node.op_type for node in unfused.graph}
    feeds = runtime.synthetic_inputs(unfused, shapes={"x": (2, SEQUENCE, 32)})
    pruned, groups = {}, {}
    for name, model in (("unfused", unfused), ("fused", fused)):
        pruned[name] = io.clone(model)
        groups[name] = [(g["kind"], g["kept"], g["removed"]) for g in PruneChannels(ratio=0.3)(pruned[name]).details["groups"]]
    assert groups["fused"] == groups["unfused"] and ("heads", 3, 1) in groups["fused"]
    assert parameter_count(pruned["fused"]) < parameter_count(fused)
    np.testing.assert_allclose(check_pruned(fused, pruned["fused"], feeds)["y"], runtime.run(pruned["unfused"], feeds)["y"], rtol=1e-4, atol=1e-5)
