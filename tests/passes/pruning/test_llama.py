"""PruneChannels on a Llama-style decoder from transformers (grouped-query attention, rotary embeddings, gated MLP),
exported by both PyTorch exporters.

A key/value head is read by a group of query heads through ``Expand`` and a reshape that merges the group into
the head axis; rotary embeddings slice each head in halves at a middle computed from ``Shape``. A head group and
MLP neurons whose readers' weights are zero must go exactly (outputs unchanged at both ORT levels).
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import io
from onnxcompress.passes.pruning import PruneChannels

pytestmark = pytest.mark.slow  # two exports of a transformers model

HEAD_DIM = 16


def _export(tmp_path_factory, dynamo: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from onnxcompress.models import export
    from onnxcompress.models.hardening.hf import CausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=4 * HEAD_DIM, intermediate_size=96, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    llama = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # query heads 0 and 1 (key/value head 0's group) and MLP neurons 1, 5, 9 are read by zeros
        llama.model.layers[0].self_attn.o_proj.weight[:, : 2 * HEAD_DIM] = 0
        llama.model.layers[0].mlp.down_proj.weight[:, [1, 5, 9]] = 0
    ids = torch.randint(0, 64, (2, 8))
    path = tmp_path_factory.mktemp("llama") / f"llama_{dynamo}.onnx"
    axes = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}, "logits": {1: "sequence"}}
    export.export_onnx(CausalLM(llama), path, (ids, torch.ones_like(ids)), input_names=["input_ids", "attention_mask"],
                       output_names=["logits"], dynamo=dynamo, dynamic_axes=axes)
    return io.load(path)


@pytest.fixture(scope="module", params=[False, True], ids=["legacy", "dynamo"])
def llama(request, tmp_path_factory):
    """A one-layer Llama (4 query heads sharing 2 key/value heads) with one head group and 3 neurons dead."""
    return _export(tmp_path_factory, request.param)


def test_a_dead_head_group_and_dead_neurons_go_exactly(llama, assert_exact_rewrite):
    model = io.clone(llama)
    run = PruneChannels(dead_only=True)(model)
    removed = sorted((g["kind"], g["removed"]) for g in run.details["groups"] if g["removed"])
    assert removed == [("heads", 1), ("neurons", 3)]
    matrices = sorted(tuple(v.const_value.shape) for v in model.graph.initializers.values()
                      if v.const_value is not None and len(v.const_value.shape) == 2 and min(v.const_value.shape) >= HEAD_DIM)
    query, key_value, output = (64, 2 * HEAD_DIM), (64, HEAD_DIM), (2 * HEAD_DIM, 64)  # one of two key/value heads left
    assert matrices == sorted([query, key_value, key_value, output, (64, 93), (64, 93), (93, 64), (64, 64), (64, 64)])
    rng = np.random.default_rng(0)
    mask = np.ones((3, 11), dtype=np.int64)
    mask[1, 7:] = 0  # a padded sentence
    assert_exact_rewrite(llama, model, {"input_ids": rng.integers(0, 64, (3, 11)), "attention_mask": mask})
