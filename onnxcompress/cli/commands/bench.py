"""``onnxcompress bench``: ORT CPU latency of several models, side by side in alternating rounds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from onnxcompress.cli.app import app, batch_option, console, err_console, status, threads_option

if TYPE_CHECKING:
    import numpy as np
    import onnx_ir as ir


@app.command("bench")
def bench(
    models: list[Path] = typer.Argument(..., help="ONNX models; speedups are against the first (above 1x: faster), as in run."),
    threads: int = threads_option(),
    batch: int = batch_option(),
    rounds: int = typer.Option(7, "--rounds", min=1),
    inputs: Path | None = typer.Option(None, "--inputs", help=".npz of inputs by name, fed to every model (default: synthetic)."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Shape of a synthetic input with dynamic dims: NAME:d0,d1,..."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
) -> None:
    """Measure median latency (p10-p90) under ORT_ENABLE_ALL, alternating models round by round."""
    from onnxcompress import bench as bench_lib
    from onnxcompress import io, runtime

    shapes = runtime.parse_input_shapes(input_shape)
    loaded = [io.load(m) for m in models]
    if json_out:
        io.check_output_path(json_out, loaded)
    feeds = _given_feeds(inputs, loaded) if inputs else [runtime.synthetic_inputs(m, batch=batch, shapes=shapes) for m in loaded]
    print_input_shapes(*(getattr(f, "dynamic", {}) for f in feeds))
    rows = _rows(feeds[0]) if inputs else batch
    sessions = [runtime.session(p, threads=threads) for p in models]
    with status(f"benchmarking {len(models)} model(s)"):
        results = bench_lib.measure(sessions, feeds, batch=rows, threads=threads, rounds=rounds)
    base = results[0].median_ms
    table = Table("model", "median ms", "p10-p90 ms", "speedup", "rounds kept/dropped")
    for path, r in zip(models, results):
        table.add_row(str(path), f"{r.median_ms:.3f}", f"{r.p10_ms:.3f}-{r.p90_ms:.3f}", f"{base / r.median_ms:.2f}x", f"{r.rounds_kept}/{r.rounds_dropped}")
    console.print(table)
    if not all(r.clean for r in results):
        console.print("[yellow]warning: no clean rounds (other processes were using the CPU); figures are noisy[/yellow]")
    if json_out:
        records = [{"model": str(p), **r.to_dict(), "ratio": r.median_ms / base, "speedup": base / r.median_ms, "input_shapes": input_shapes(f)}
                   for p, r, f in zip(models, results, feeds)]
        io.write_bytes(json_out, json.dumps(records, indent=2).encode(), inputs=loaded)


def print_input_shapes(*dynamic: Mapping[str, tuple[int, ...]]) -> None:
    """A line on stderr with the shapes synthetic inputs gave dynamic dims (``SyntheticFeeds.dynamic``), as the
    ``--input-shape`` pins that repeat them: one per distinct set, none when no dim was dynamic."""
    from onnxcompress import runtime

    for line in dict.fromkeys(runtime.describe_shapes(shapes) for shapes in dynamic if shapes):
        err_console.print(f"synthetic inputs: dynamic dims set to {line}", markup=False, highlight=False, soft_wrap=True)


def input_shapes(feeds: Mapping[str, object]) -> dict[str, list[int]]:
    """The shape of every input fed, for a JSON record."""
    import numpy as np

    return {name: list(np.shape(value)) for name, value in feeds.items()}


def _given_feeds(path: Path, models: list[ir.Model]) -> list[dict[str, np.ndarray]]:
    """The arrays of ``path``, checked against every model's inputs (names and ranks)."""
    from onnxcompress import io

    arrays = io.load_arrays(path, models[0])
    for model in models[1:]:
        io.check_input_arrays({name: a.shape for name, a in arrays.items()}, model, path)
    return [arrays] * len(models)


def _rows(feeds: Mapping[str, np.ndarray]) -> int:
    """The batch of given inputs: the first axis of the first input with one."""
    import numpy as np

    return next((int(a.shape[0]) for a in feeds.values() if np.ndim(a)), 1)
