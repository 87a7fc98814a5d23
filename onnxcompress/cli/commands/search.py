"""``onnxcompress search``: recipes and grids of options tried on one model, the best meeting a goal written out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from onnxcompress.cli.app import app, batch_option, console, ray_address_option, status, threads_option, workers_option
from onnxcompress.cli.command_line import command_line
from onnxcompress.cli.commands.compare import load_for_comparison
from onnxcompress.cli.commands.run import INPUTS_HELP
from onnxcompress.defaults import LABELS_KEY, METRIC_HELP, Metric, Prefer
from onnxcompress.errors import CheckFailed

if TYPE_CHECKING:
    from onnxcompress.search import SearchResult


@app.command("search")
def search(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Input ONNX model (never modified)."),
    recipes: list[str] = typer.Option(
        [], "-r", "--recipe",
        help="'PASS[:k=v];PASS...' or a .toml recipe; {a,b,c} expands to each alternative, all combinations taken "
             "(-r 'prune-channels:ratio={0.1,0.3,0.5};{quantize-static,}'); repeat."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the best model meeting the goal (only when one does)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the goal, the best, the Pareto front and every candidate here."),
    min_cosine: float | None = typer.Option(None, "--min-cosine", min=-1.0, max=1.0, help="Goal: every output's cosine with the input's at least this."),
    max_drop: float | None = typer.Option(None, "--max-drop", min=0.0, max=1.0, help="Goal: top-1 accuracy at most this below the input's (needs --labels)."),
    max_latency: float | None = typer.Option(None, "--max-latency", min=0.0, help="Goal: latency at most this ratio to the input's (0.5: twice as fast)."),
    max_size: float | None = typer.Option(None, "--max-size", min=0.0, help="Goal: at most this many MB."),
    prefer: Prefer = typer.Option("latency", "--prefer", help="Which candidate meeting the goal is best: the fastest, the smallest or the most faithful."),
    exhaustive: bool = typer.Option(False, "--exhaustive", help="Run every candidate, even those only adding loss to one that missed the goal."),
    labels: Path | None = typer.Option(None, "--labels", help=f".npz of the model's inputs by name and class labels under '{LABELS_KEY}'."),
    metric: Metric = typer.Option("top1", "--metric", help=METRIC_HELP),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibration data (.npz or folder)."),
    inputs: Path | None = typer.Option(None, "--inputs", help=INPUTS_HELP),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Pin dynamic dims: NAME:d0,d1,..."),
    workers: int = workers_option(),
    ray_address: str | None = ray_address_option(),
    threads: int = threads_option(),
    batch: int = batch_option(),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Timing rounds of the side-by-side latency measurement."),
) -> None:
    """Try every recipe on MODEL, time the results side by side, write the best meeting the goal (exit 1 if none does)."""
    from onnxcompress import grid, io, trial
    from onnxcompress import search as search_lib
    from onnxcompress.errors import UsageError
    from onnxcompress.provenance import Provenance

    goal = search_lib.Goal(min_cosine, max_drop, max_latency, max_size)
    candidates = grid.expand_all(recipes)
    if json_out is not None and json_out.resolve() == output.resolve():
        raise UsageError(f"-o and --json are the same file: {output}")
    source, measurement, reader = load_for_comparison(model, [output, json_out], threads=threads, batch=batch, rounds=rounds,
                                                      input_shape=input_shape, inputs=inputs, calibration=calibration,
                                                      labels=labels, metric=metric)
    provenance = Provenance.collect(source, candidates, threads=threads, command=command_line(ctx))
    where = f"on the Ray cluster at {ray_address}" if ray_address else f"on {workers} Ray workers" if workers > 1 else "here"
    with status(f"searching {len(candidates)} candidate(s) {where}"):
        result = search_lib.search(source, candidates, goal, measurement=measurement, calibration=reader, workers=workers,
                                   address=ray_address, exhaustive=exhaustive, prefer=prefer)
    print_result(result)
    if json_out is not None:
        engine = {"workers": workers, "address": ray_address, "timing": "side by side in this process, after every task ended"}
        document = {"provenance": provenance.to_dict(), "engine": engine, **result.to_dict()}
        io.write_bytes(json_out, json.dumps(document, indent=2).encode(), inputs=[source])
        console.print(f"wrote {json_out}")
    if result.best is None:
        raise CheckFailed(f"no candidate meets the goal ({_tally(result)}); {output} not written")
    io.save(trial.from_bytes(result.best.model, like=source), output, inputs=[source])
    console.print(f"best: {result.best.recipe}; wrote {output}")


def print_result(result: SearchResult) -> None:
    """One row per candidate: status, size, latency ratio, quality, the goal's verdict, Pareto and best marks, why not."""
    quality = "accuracy" if result.reference.accuracy is not None else "cosine"
    table = Table("recipe", "status", "size MB", "latency", quality, "goal", "Pareto", "why not")
    for c in result.candidates:
        ran = c.status == "ok"
        table.add_row(
            ("* " if c is result.best else "") + c.recipe, c.status,
            f"{c.size_bytes / 1e6:.3f}" if ran else "-", f"{c.latency_ratio:.3f}x" if ran else "-",
            f"{c.quality:.6f}" if ran else "-", ("yes" if c.meets_goal else "no") if ran else "-",
            "*" if c.pareto else "", c.reason or "; ".join(c.misses))
    console.print(table)


def _tally(result: SearchResult) -> str:
    """How many candidates missed the goal, failed and were skipped."""
    counts = {state: sum(c.status == state for c in result.candidates) for state in ("ok", "failed", "skipped")}
    return f"{counts['ok']} missed it, {counts['failed']} failed, {counts['skipped']} skipped"
