"""``onnxcompress compare``: several pipelines on one model, the trade-off table, Pareto-best marked."""

from __future__ import annotations

import json
from pathlib import Path

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from onnxcompress.cli.app import app, batch_option, console, ray_address_option, status, threads_option, workers_option
from onnxcompress.cli.command_line import command_line
from onnxcompress.cli.commands.run import INPUTS_HELP, check_samples, load_labelled, open_calibration
from onnxcompress.defaults import Metric

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxcompress import compare as compare_lib
    from onnxcompress.pipeline import Measurement


@app.command("compare")
def compare(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Input ONNX model (never modified)."),
    recipes: list[str] = typer.Option([], "-r", "--recipe", help="'PASS[:k=v];PASS...' or a .toml recipe; repeat."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibration data (.npz or folder)."),
    inputs: Path | None = typer.Option(None, "--inputs", help=INPUTS_HELP),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Pin dynamic dims: NAME:d0,d1,..."),
    plot_out: Path | None = typer.Option(None, "--plot", help="Write the trade-off chart (PNG) here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the outcomes as JSON here."),
    threads: int = threads_option(),
    batch: int = batch_option(),
    rounds: int = typer.Option(5, "--rounds", min=1),
    workers: int = workers_option(),
    ray_address: str | None = ray_address_option(),
) -> None:
    """Run each recipe on MODEL, time all results side by side and mark the Pareto-best."""
    from onnxcompress import compare as compare_lib
    from onnxcompress import io, plot
    from onnxcompress.provenance import Provenance

    source, measurement, reader = load_for_comparison(model, [plot_out, json_out], threads=threads, batch=batch, rounds=rounds,
                                                      input_shape=input_shape, inputs=inputs, calibration=calibration)
    provenance = Provenance.collect(source, recipes, threads=threads, command=command_line(ctx))
    with status(f"running {len(recipes)} recipe(s)"):
        outcomes = compare_lib.compare_recipes(source, recipes, measurement=measurement, calibration=reader,
                                               workers=workers, address=ray_address)
    print_outcomes(outcomes)
    if plot_out:
        title = f"{model.name}: {len(recipes)} recipe(s) beside the input"
        plot.plot_tradeoff(outcomes, plot_out, title=title, provenance=provenance, inputs=[source])
        console.print(f"wrote {plot_out}")
    if json_out:
        document = {"provenance": provenance.to_dict(), "outcomes": [o.to_dict() for o in outcomes]}
        io.write_bytes(json_out, json.dumps(document, indent=2).encode(), inputs=[source])


def load_for_comparison(model: Path, outputs: list[Path | None], *, threads: int, batch: int, rounds: int, input_shape: list[str],
                        inputs: Path | None, calibration: Path | None, labels: Path | None = None,
                        metric: Metric = "top1") -> tuple[ir.Model, Measurement, object | None]:
    """The model (loaded once every output path is checked against it), how recipes on it are checked and timed
    (``--inputs``, else the first held-out calibration samples as ``run`` takes them, else synthetic inputs pinned by
    ``--input-shape``; ``--labels``, ``--threads``, ``--batch``, ``--rounds``) and its calibration reader (None: no data)."""
    from onnxcompress import io, runtime
    from onnxcompress.pipeline import Measurement

    source = io.load(model)
    for out in outputs:
        if out is not None:
            io.check_output_path(out, [source])
    reader = open_calibration(calibration, source) if calibration else None
    feeds = io.load_arrays(inputs, source) if inputs else check_samples(reader, source, batch) if reader else None
    measurement = Measurement(
        threads=threads,
        batch=batch,
        rounds=rounds,
        input_shapes=runtime.parse_input_shapes(input_shape),
        feeds=feeds,
        labelled=load_labelled(labels, source, metric) if labels else None,
    )
    return source, measurement, reader


def print_outcomes(outcomes: list[compare_lib.Outcome]) -> None:
    """The trade-off table; a star marks the Pareto-best recipes."""
    table = Table("recipe", "size MB", "median ms", "speedup", "quality", "Pareto")
    for o in outcomes:
        table.add_row(o.name, f"{o.size_bytes / 1e6:.3f}", f"{o.latency_ms:.3f}", f"{o.speedup:.2f}x", f"{o.quality:.6f}", "*" if o.pareto else "")
    console.print(table)
