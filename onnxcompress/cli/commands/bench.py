"""``onnxcompress bench``: ORT CPU latency of several models, side by side in alternating rounds."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from onnxcompress import bench as bench_lib
from onnxcompress import io, runtime
from onnxcompress.cli.app import app, batch_option, console, status, threads_option


@app.command("bench")
def bench(
    models: list[Path] = typer.Argument(..., help="ONNX models; ratios are to the first."),
    threads: int = threads_option(),
    batch: int = batch_option(),
    rounds: int = typer.Option(7, "--rounds", min=1),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Pin dynamic dims: NAME:d0,d1,..."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
) -> None:
    """Measure median latency (p10-p90) under ORT_ENABLE_ALL, alternating models round by round."""
    shapes = runtime.parse_input_shapes(input_shape)
    loaded = [io.load(m) for m in models]
    if json_out:
        io.check_output_path(json_out, loaded)
    feeds = [runtime.synthetic_inputs(m, batch=batch, shapes=shapes) for m in loaded]
    sessions = [runtime.session(p, threads=threads) for p in models]
    with status(f"benchmarking {len(models)} model(s)"):
        results = bench_lib.measure(sessions, feeds, batch=batch, threads=threads, rounds=rounds)
    base = results[0].median_ms
    table = Table("model", "median ms", "p10-p90 ms", "ratio", "rounds kept/dropped")
    for path, r in zip(models, results):
        table.add_row(str(path), f"{r.median_ms:.3f}", f"{r.p10_ms:.3f}-{r.p90_ms:.3f}", f"{r.median_ms / base:.3f}", f"{r.rounds_kept}/{r.rounds_dropped}")
    console.print(table)
    if not all(r.clean for r in results):
        console.print("[yellow]warning: no clean rounds (other processes were using the CPU); figures are noisy[/yellow]")
    if json_out:
        records = [{"model": str(p), **r.to_dict(), "ratio": r.median_ms / base} for p, r in zip(models, results)]
        io.write_bytes(json_out, json.dumps(records, indent=2).encode(), inputs=loaded)
