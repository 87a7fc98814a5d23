"""Row-wise INT8 embedding tables: each row within half a step of FP32, stored as int8, run by ORT."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress import checks, io, runtime
from onnxcompress.passes import QuantizeDynamic
from onnxcompress.passes.quantization.support.embedding import quantizable_gathers, quantize_embeddings, quantize_rows

from ..conftest import with_weights

LOOKUP_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
lookup (int64[N, 5] ids) => (float[N, 5, 16] e, float[N, 5, 8] y)
<float[600, 16] table = {0.0}, float[16, 8] w = {0.0}, float[4, 2] tiny = {0.0}>
{
    e = Gather <axis = 0> (table, ids)
    y = MatMul (e, w)
}
"""


def lookup_model() -> ir.Model:
    """An embedding lookup whose rows differ in scale by 1000x (what one per-tensor scale handles badly)."""
    model = with_weights(LOOKUP_TEXT)
    table = model.graph.initializers["table"].const_value.numpy().copy()
    table *= np.geomspace(1e-3, 1.0, len(table), dtype=np.float32)[:, None]
    table[7] = 0.0
    model.graph.initializers["table"].const_value = ir.tensor(table, name="table")
    return model


def ids(seed: int = 0) -> dict[str, np.ndarray]:
    return {"ids": np.random.default_rng(seed).integers(0, 600, size=(4, 5)).astype(np.int64)}


def test_rows_round_within_half_a_step_of_their_own_scale() -> None:
    table = lookup_model().graph.initializers["table"].const_value.numpy()
    rows, scales = quantize_rows(table)
    assert rows.dtype == np.int8 and scales.shape == (600, 1)
    assert np.all(np.abs(rows * scales - table) <= scales / 2 + 1e-12)
    assert scales[7, 0] == 1.0 and not rows[7].any()


def test_rewritten_lookup_matches_fp32_at_every_optimization_level() -> None:
    before = lookup_model()
    after = io.clone(before)
    assert [n.name for n in quantizable_gathers(after.graph)] == ["gather_0"]
    assert quantize_embeddings(io.clone(before).graph, excluded={"gather_0"}) == []
    assert quantize_embeddings(after.graph) == ["gather_0"]
    assert checks.graph_problems(after) == []
    assert after.graph.initializers["table_int8"].const_value.dtype == ir.DataType.INT8
    feeds = {"ids": np.concatenate([ids()["ids"], np.full((1, 5), 7)])}
    expected = runtime.run(before, feeds, optimization="disable")["e"]
    half_step = quantize_rows(before.graph.initializers["table"].const_value.numpy())[1][feeds["ids"]] / 2
    for level in ("disable", "all"):
        got = runtime.run(after, feeds, optimization=level)["e"]
        assert np.all(np.abs(got - expected) <= half_step * 1.001)


def test_quantize_dynamic_stores_tables_row_wise_unless_excluded() -> None:
    model = lookup_model()
    run = QuantizeDynamic()(model)
    assert "table_int8" in model.graph.initializers and "table" not in model.graph.initializers
    assert any("row-wise INT8" in line for line in run.notes)
    kept = lookup_model()
    QuantizeDynamic(exclude=["gather_0"])(kept)
    assert "table" in kept.graph.initializers
