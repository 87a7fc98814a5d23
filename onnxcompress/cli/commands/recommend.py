"""``onnxcompress recommend``: the pipeline to run on a model, with a reason for every pass."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxcompress import io, recommend as recommend_lib, spec
from onnxcompress.cli.app import app, console
from onnxcompress.cli.commands.run import open_calibration, print_report
from onnxcompress.errors import UsageError
from onnxcompress.pipeline import Pipeline

TARGETS = ("cpu",)


@app.command("recommend")
def recommend(
    model: Path = typer.Argument(..., help="ONNX model to analyse."),
    target: str = typer.Option("cpu", "--target", help="Where the model will run (cpu)."),
    apply: bool = typer.Option(False, "--apply", help="Run the recommended pipeline and write -o OUT."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output model for --apply."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibration data for --apply (.npz or folder)."),
) -> None:
    """Recognise the model family and the CPU, and print the recommended pipeline."""
    if target not in TARGETS:
        raise UsageError(f"unknown --target {target!r}; supported: {', '.join(TARGETS)}")
    if apply and output is None:
        raise UsageError("--apply needs -o OUT (where to write the optimized model)")
    source = io.load(model)
    rec = recommend_lib.recommend(source)
    print_recommendation(rec, model, output or model.with_name(model.stem + ".opt.onnx"))
    if apply:
        io.check_output_path(output, [source])
        passes = [spec.parse_pass(s.spec) for s in rec.steps]
        reader = open_calibration(calibration, source) if calibration else None
        result = Pipeline(passes).run(source, calibration=reader)
        io.save(result.model, output, inputs=[source])
        print_report(result.report)
        console.print(f"wrote {output}")


def print_recommendation(rec: recommend_lib.Recommendation, model: Path, output: Path) -> None:
    """Family, evidence, CPU, the steps with reasons, and the command to run them."""
    console.print(f"[bold]{model}[/bold]: {rec.family} ({'; '.join(rec.evidence)})", highlight=False)
    console.print(f"cpu: {rec.cpu.arch}, int8 support: {rec.cpu.int8_level}", highlight=False)
    for index, step in enumerate(rec.steps, 1):
        console.print(f"  {index}. [bold]{step.spec}[/bold] - {step.reason}", highlight=False)
    for line in rec.skipped:
        console.print(f"  [dim]skipped {line}[/dim]", highlight=False)
    if rec.input_shapes:
        shapes = ", ".join(f"{name}:{','.join(map(str, dims))}" for name, dims in rec.input_shapes.items())
        console.print(f"dynamic dims: the command checks and measures at {shapes}; set its --input-shape values to "
                      "the sizes the model runs at", highlight=False, markup=False)
    console.print(f"run it with:\n  {rec.command(model, output)}", highlight=False, soft_wrap=True)
