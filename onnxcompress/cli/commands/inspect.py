"""``onnxcompress inspect``: opset, inputs/outputs, params, size, op histogram."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from onnxcompress.cli.app import app, console


@app.command("inspect")
def inspect_model(
    model: Path = typer.Argument(..., help="ONNX model file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show a model's opset, signature, parameter count, size and op histogram."""
    from onnxcompress import io, stats

    st = stats.model_stats(io.load(model))
    st.size_bytes = model.stat().st_size + _external_data_bytes(model)
    if as_json:
        console.print_json(json.dumps(st.to_dict()))
        return
    console.print(f"[bold]{model}[/bold]  opset {st.opset}  producer {st.producer or '-'}")
    console.print(f"params {st.params:,}  size {st.size_bytes / 1e6:.3f} MB  nodes {st.nodes}")
    io_table = Table("", "name", "type", "shape")
    for kind, values in (("input", st.inputs), ("output", st.outputs)):
        for v in values:
            io_table.add_row(kind, v.name, v.dtype, str(v.shape))
    console.print(io_table)
    ops = Table("op", "count")
    for op, count in st.op_histogram.items():
        ops.add_row(op, str(count))
    console.print(ops)


def _external_data_bytes(model: Path) -> int:
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    proto = onnx.load(str(model), load_external_data=False)
    locations = {
        entry.value
        for t in _get_all_tensors(proto)
        if uses_external_data(t)
        for entry in t.external_data
        if entry.key == "location"
    }
    return sum((model.parent / loc).stat().st_size for loc in locations)
