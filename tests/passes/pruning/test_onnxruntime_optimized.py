"""PruneChannels on a BERT that went through ONNX Runtime's transformer optimizer (fused com.microsoft Attention over
packed Q/K/V weights, BiasGelu, SkipLayerNormalization, EmbedLayerNormalization), as Optimum's optimized exports
ship: a dead head and dead FFN neurons go exactly, and heads go whole at a ratio."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.models.hardening import entry
from onnxcompress.passes.pruning import PruneChannels

pytestmark = pytest.mark.slow  # a transformers export through ORT's optimizer

HEADS, HIDDEN = 4, 128


@pytest.fixture(scope="module")
def optimized() -> ir.Model:
    model = io.load(entry("hf-bert-legacy-ortopt").model())
    assert {"Attention", "BiasGelu", "SkipLayerNormalization"} <= {node.op_type for node in model.graph}
    return model


def _reader_weight(value: ir.Value) -> ir.Value:
    """The weight of the MatMul reading ``value`` (through a BiasGelu for an FFN's neurons)."""
    node = next(node for node, _ in value.uses())
    if node.op_type == "BiasGelu":
        return _reader_weight(node.outputs[0])
    return node.inputs[1]


def _zero_rows(weight: ir.Value, rows: slice | list[int]) -> None:
    array = weight.const_value.numpy().copy()
    array[rows] = 0
    weight.const_value = ir.tensor(array, name=weight.name)


def _feeds() -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(1000, 2000, (3, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_a_dead_head_and_dead_neurons_go_exactly(optimized, assert_exact_rewrite):
    before = io.clone(optimized)
    attention = next(node for node in before.graph if node.op_type == "Attention")
    size = HIDDEN // HEADS
    _zero_rows(_reader_weight(attention.outputs[0]), slice(size, 2 * size))  # head 1 of the first layer
    ffn = next(node for node in before.graph if node.op_type == "BiasGelu")
    _zero_rows(_reader_weight(ffn.outputs[0]), [5, 9, 40])
    after = io.clone(before)
    run = PruneChannels(dead_only=True)(after)
    assert sorted((g["kind"], g["removed"]) for g in run.details["groups"] if g["removed"]) == [("heads", 1), ("neurons", 3)]
    heads = [node.attributes.get_int("num_heads") for node in after.graph if node.op_type == "Attention"]
    assert heads == [HEADS - 1, HEADS]
    assert_exact_rewrite(before, after, _feeds())


def test_half_the_heads_and_neurons_go_at_ratio_one_half(optimized):
    model = io.clone(optimized)
    PruneChannels(ratio=0.5, accept_loss=True)(model)
    assert [node.attributes.get_int("num_heads") for node in model.graph if node.op_type == "Attention"] == [HEADS // 2] * 2
    assert runtime.run(model, _feeds())["sentence_embedding"].shape == (3, HIDDEN)


def test_an_embedding_read_only_for_its_shape_does_not_stop_pruning():
    """ORT's optimizer leaves DistilBERT's word-embedding Gather read by a Shape alone; its untied copy made every
    removal grow the model by a table, and the pass declined it all."""
    model = io.load(entry("hf-distilbert-legacy-ortopt").model())
    run = PruneChannels(ratio=0.5, accept_loss=True)(model)
    assert run.modified and run.details["lookup_shapes_rewritten"] == 1
    assert [node.attributes.get_int("num_heads") for node in model.graph if node.op_type == "Attention"] == [HEADS // 2] * 2
    assert "word_embeddings" not in " ".join(g["group"] for g in run.details["groups"] if g["removed"])
