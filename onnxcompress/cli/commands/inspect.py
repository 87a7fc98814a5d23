"""``onnxcompress inspect``: opset, inputs/outputs, params, size, op histogram; with ``--nodes`` the node names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from onnxcompress.cli.app import app, console

if TYPE_CHECKING:
    import onnx_ir as ir


@app.command("inspect")
def inspect_model(
    model: Path = typer.Argument(..., help="ONNX model file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    nodes: bool = typer.Option(False, "--nodes", help="List the node names (what exclude patterns match), one per line with the op type."),
    op: list[str] = typer.Option([], "--op", help="With --nodes: only nodes of this op type (repeatable)."),
) -> None:
    """Show a model's opset, signature, parameter count, size and op histogram, or with --nodes its node names."""
    from onnxcompress import io, stats

    loaded = io.load(model)
    if nodes:
        _print_nodes(loaded, set(op), as_json)
        return
    st = stats.model_stats(loaded)
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


def _print_nodes(model: ir.Model, op_types: set[str], as_json: bool) -> None:
    """One line per main-graph node: op type, name and the names it took over in a rewrite (``exclude`` matches
    them too); cut to the terminal's width, whole when piped."""
    from onnxcompress.passes.names import names_of

    listed = [node for node in model.graph if not op_types or node.op_type in op_types]
    if as_json:
        console.print_json(json.dumps([{"name": node.name, "op_type": node.op_type, "names": names_of(node)} for node in listed]))
        return
    width = max((len(node.op_type) for node in listed), default=0)
    cut = console.is_terminal
    for node in listed:
        also = [name for name in names_of(node) if name != node.name]
        line = f"{node.op_type:<{width}}  {node.name or '(unnamed)'}" + (f"  (also {', '.join(also)})" if also else "")
        console.print(line, markup=False, highlight=False, soft_wrap=not cut, no_wrap=cut, overflow="ellipsis" if cut else None)


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
