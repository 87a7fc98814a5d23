"""``onnxcompress run``: apply a pipeline of passes, verifying and measuring every step."""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from onnxcompress import records
from onnxcompress.cli.app import app, batch_option, calibration_option, console, err_console, threads_option
from onnxcompress.cli.command_line import command_line
from onnxcompress.cli.commands.bench import input_shapes, print_input_shapes
from onnxcompress.defaults import LABELS_KEY, METRIC_HELP, Metric
from onnxcompress.errors import UsageError

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxcompress.pipeline import LabelledData
    from onnxcompress.report import Report

MAIN_COLUMNS = ("step", "size MB", "latency ms", "speedup", "cosine", "slice err", "accuracy")  # what fits 80 columns
FULL_TABLE_WIDTH = 140  # every column of the step table, unsqueezed
INPUTS_HELP = ".npz of inputs the outputs are checked on and timed with (default: the first --batch held-out calibration samples, which no step fits on, else synthetic)."


@app.command("run")
def run_pipeline(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Input ONNX model (never modified)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the result."),
    pass_specs: list[str] = typer.Option([], "-p", "--pass", help="PASS[:k=v,...]; repeat, in order."),
    recipe: Path | None = typer.Option(None, "--recipe", help="TOML recipe: one [\\[pass]] table per pass, with its name and options (run before -p)."),
    calibration: Path | None = calibration_option("--calibration"),
    image_size: str | None = calibration_option("--image-size"),
    layout: str | None = calibration_option("--layout"),
    mean: str | None = calibration_option("--mean"),
    std: str | None = calibration_option("--std"),
    tokenizer: Path | None = calibration_option("--tokenizer"),
    report_dir: Path | None = typer.Option(None, "--report", help="Write report.json, report.md and report.png here."),
    no_bench: bool = typer.Option(False, "--no-bench", help="Skip the latency measurement."),
    bench_each: bool = typer.Option(
        False, "--bench-each", help="Time every step beside the input (slower); by default the input and the final model are timed once, at the end."),
    reject_slower: bool = typer.Option(False, "--reject-slower", help="Roll back a step that makes latency worse."),
    max_drop: float | None = typer.Option(
        None, "--max-drop", min=0.0, max=1.0, help="Roll back a lossy step losing more accuracy than this (needs --labels)."),
    labels: Path | None = typer.Option(
        None, "--labels", help=f".npz of the model's inputs by name and class labels under '{LABELS_KEY}': accuracy per step."),
    metric: Metric = typer.Option("top1", "--metric", help=METRIC_HELP),
    inputs: Path | None = typer.Option(None, "--inputs", help=INPUTS_HELP),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Shape of a synthetic input with dynamic dims: NAME:d0,d1,..."),
    threads: int = threads_option(),
    batch: int = batch_option(),
) -> None:
    """Run passes on MODEL and write the result to OUTPUT."""
    from onnxcompress import io, plot, runtime, spec
    from onnxcompress.pipeline import Measurement, Pipeline
    from onnxcompress.report import check_report_folder

    passes = (spec.load_recipe(recipe) if recipe else []) + [spec.parse_pass(s) for s in pass_specs]
    if not passes:
        raise UsageError("no passes given: use -p PASS (see `onnxcompress passes`) or --recipe FILE")
    source = io.load(model)
    io.check_output_path(output, [source])
    if report_dir:
        check_report_folder(report_dir, plot=plot.available(), inputs=[source])
    hint_weights_as_inputs(source, passes)
    pins = runtime.parse_input_shapes(input_shape)
    reader = open_calibration(calibration, source, DataOptions(image_size, layout, mean, std, tokenizer))
    feeds = io.load_arrays(inputs, source) if inputs else check_samples(reader, source, batch) if reader else None
    used = input_shapes(feeds) if feeds is not None else synthetic_shapes(source, batch, pins)
    measurement = Measurement(
        benchmark=not no_bench,
        each_step=bench_each,
        threads=threads,
        batch=batch,
        input_shapes=pins,
        feeds=feeds,
        labelled=load_labelled(labels, source, metric) if labels else None,
    )
    pipeline = Pipeline(passes, measurement=measurement, reject_slower=reject_slower, max_drop=max_drop)
    result = pipeline.run(source, calibration=reader)
    result.report.provenance.command = command_line(ctx)
    result.report.steps[0].details["input_shapes"] = used
    if not writes_files():
        return
    io.save(result.model, output, inputs=[source], snapshot=result.snapshot)
    if report_dir:
        write_report(result.report, report_dir, [source])
    print_report(result.report)
    console.print(f"wrote {output}")


def hint_weights_as_inputs(model: ir.Model, passes: list) -> None:
    """Say on stderr when the model's weights are also graph inputs and the chain leaves them so: no pass rewrites
    them and ORT neither folds nor pre-packs them, so most steps would find nothing to do."""
    from onnxcompress.passes.remove_initializer_inputs import RemoveInitializerInputs, initializer_inputs, weights_as_inputs

    exposed = initializer_inputs(model.graph)
    if exposed and not any(isinstance(p, RemoveInitializerInputs) for p in passes):
        err_console.print(f"hint: {weights_as_inputs(exposed)}, which no pass rewrites and ONNX Runtime does not fold: "
                          "-p remove-initializer-inputs first makes them constants", highlight=False, markup=False)


def writes_files() -> bool:
    """False in the processes other than rank 0 of a ``torchrun`` launch: every process runs the same chain
    (``recover`` trains data-parallel), and one of them writes the results."""
    return os.environ.get("RANK", "0") in ("", "0")


def check_samples(reader, model: ir.Model, batch: int) -> dict:
    """The first ``batch`` held-out calibration samples (``holdout.check_samples``): without ``--inputs`` the checks
    run on real data no step fitted on rather than synthetic inputs (said on stderr when the model has dynamic dims, as for synthetic inputs)."""
    from onnxcompress import runtime
    from onnxcompress.calibration import holdout

    feeds, described = holdout.check_samples(reader, model, batch)
    if runtime.dynamic_inputs(model):
        err_console.print(f"checks and timings on {described} (--inputs FILE.npz to choose others)", highlight=False, markup=False)
    return feeds


def synthetic_shapes(model: ir.Model, batch: int, pins: dict[str, tuple[int, ...]]) -> dict[str, list[int]]:
    """The shapes of the synthetic inputs the checks will use (said on stderr when a dim is dynamic), before ``model`` changes."""
    from onnxcompress import runtime

    chosen = runtime.input_shapes(model, batch=batch, shapes=pins)
    print_input_shapes({name: chosen[name] for name in runtime.dynamic_inputs(model)})
    return {name: list(dims) for name, dims in chosen.items()}


def load_labelled(path: Path, model, metric: Metric) -> LabelledData:
    """The labelled data of ``path`` (inputs by name, class labels under ``LABELS_KEY``) checked against ``model``."""
    from onnxcompress import io
    from onnxcompress.pipeline import LabelledData

    return LabelledData.from_arrays(io.load_arrays(path), model, metric=metric, source=str(path))


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """How ``--calibration`` data is read, as given: an image folder's ``--image-size``, ``--layout``,
    ``--mean`` and ``--std``, a text file's ``--tokenizer`` (None: not given)."""

    image_size: str | None = None
    layout: str | None = None
    mean: str | None = None
    std: str | None = None
    tokenizer: Path | None = None

    def flags(self) -> str:
        """The options given, as command-line text (for a command printed to be run later)."""
        given = {name: value for name, value in dataclasses.asdict(self).items() if value is not None}
        return "".join(f" --{name.replace('_', '-')} {shlex.quote(str(value))}" for name, value in given.items())


def open_calibration(path: Path | None, model, options: DataOptions = DataOptions()):
    """The calibration reader for ``path`` read as ``options`` say (see ``calibration.open_reader``), None
    without a path; which preprocessing an image folder or text file gets is said on stderr."""
    from onnxcompress import calibration

    if path is None:
        if options.flags():
            raise UsageError(f"{options.flags().split()[0]} says how to read calibration data; give --calibration too")
        return None
    reader = calibration.open_reader(
        path, model, tokenizer=options.tokenizer, layout=options.layout, size=_numbers(options.image_size, "--image-size", "H,W", int),
        mean=_numbers(options.mean, "--mean", "r,g,b"), std=_numbers(options.std, "--std", "r,g,b"))
    if hasattr(reader, "describe"):
        err_console.print(f"calibration: {reader.describe()}", highlight=False, markup=False)
    return reader


def _numbers(text: str | None, flag: str, form: str, kind: type = float) -> tuple | None:
    """``text`` (``a,b,c``) as a tuple of ``kind``; ints are positive and as many as ``form`` names. A one-line
    ``UsageError`` saying ``form`` otherwise."""
    if text is None:
        return None
    try:
        values = tuple(kind(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or kind is int and (len(values) != len(form.split(",")) or min(values) < 1):
        raise UsageError(f"{flag} takes {form}, got {text!r}")
    return values


def write_report(report: Report, folder: Path, inputs: list[ir.Model]) -> None:
    """Write report.json, report.md and, when matplotlib is installed, report.png into ``folder`` (never over ``inputs``' files)."""
    try:
        report.write(folder, inputs=inputs)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None


def print_report(report: Report) -> None:
    """The per-step table on the console, with a warning when its latency figures are noisy. Columns with
    nothing measured are left out, and a terminal narrower than the whole table gets the main columns only."""
    rows = report.rows()
    columns = [key for key in rows[0] if any(row[key] != "-" for row in rows)]
    narrow = console.width < FULL_TABLE_WIDTH
    table = Table(*(key for key in columns if not narrow or key in MAIN_COLUMNS),
                  caption="main columns only: a wider terminal or --report shows all" if narrow else None)
    for row in rows:
        table.add_row(*(row[key] for key in columns if not narrow or key in MAIN_COLUMNS))
    console.print(table)
    if records.noisy(report.steps):
        console.print(f"[yellow]{records.NOISY_NOTE}[/yellow]", highlight=False)
    for step in report.steps:
        for note in step.notes:
            console.print(f"[dim]{step.pass_name}: {note}[/dim]", highlight=False)

