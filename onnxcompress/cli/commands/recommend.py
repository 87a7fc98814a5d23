"""``onnxcompress recommend``: the pipeline to run on a model, proven on it, with a reason for every pass kept or dropped."""

from __future__ import annotations

import json
from pathlib import Path

from typing import TYPE_CHECKING

import typer

from onnxcompress.cli.app import app, calibration_option, console
from onnxcompress.cli.commands.run import DataOptions, check_samples, load_labelled, open_calibration, print_report
from onnxcompress.defaults import LABELS_KEY
from onnxcompress.errors import UsageError

if TYPE_CHECKING:
    from onnxcompress import recommend as recommend_lib

TARGETS = ("cpu",)


@app.command("recommend")
def recommend(
    model: Path = typer.Argument(..., help="ONNX model to analyse."),
    target: str = typer.Option("cpu", "--target", help="Where the model will run (cpu)."),
    apply: bool = typer.Option(False, "--apply", help="Run the recommended pipeline and write -o OUT."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output model for --apply."),
    calibration: Path | None = calibration_option("--calibration", "The chain is checked on samples held out of it. "),
    image_size: str | None = calibration_option("--image-size"),
    layout: str | None = calibration_option("--layout"),
    mean: str | None = calibration_option("--mean"),
    std: str | None = calibration_option("--std"),
    tokenizer: Path | None = calibration_option("--tokenizer"),
    labels: Path | None = typer.Option(
        None, "--labels", help=f".npz of the model's inputs by name and class labels under '{LABELS_KEY}': the chain must keep top-1."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the recommendation and what was measured as JSON."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Shape of a synthetic input with dynamic dims, checked and "
                                          "measured at without --calibration: NAME:d0,d1,..."),
) -> None:
    """Recognise the model family and the CPU, check the candidate chain on the model, and print what holds."""
    from onnxcompress import io, runtime, spec
    from onnxcompress import recommend as recommend_lib
    from onnxcompress.pipeline import Measurement, Pipeline

    if target not in TARGETS:
        raise UsageError(f"unknown --target {target!r}; supported: {', '.join(TARGETS)}")
    if apply and output is None:
        raise UsageError("--apply needs -o OUT (where to write the optimized model)")
    source = io.load(model)
    if apply:
        io.check_output_path(output, [source])
    data_options = DataOptions(image_size, layout, mean, std, tokenizer)
    reader = open_calibration(calibration, source, data_options)
    labelled = load_labelled(labels, source, "top1") if labels else None
    pins = runtime.parse_input_shapes(input_shape)
    rec = recommend_lib.prove(source, recommend_lib.recommend(source, shapes=pins), calibration=reader, labelled=labelled)
    command = rec.command(model, output or model.with_name(model.stem + ".opt.onnx"), calibration=calibration, labels=labels)
    command = command + data_options.flags() if command and calibration else command
    print_recommendation(rec, model, command, on_data=reader is not None)
    if json_out is not None:
        io.write_bytes(json_out, json.dumps({**rec.to_dict(), "command": command}, indent=2).encode(), inputs=[source])
    if apply and not rec.steps:
        console.print(f"--apply: no step to apply, {output} not written", highlight=False, markup=False)
    elif apply:
        passes = [spec.parse_pass(s.spec) for s in rec.steps]
        feeds = check_samples(reader, source, 1) if reader is not None else None
        measurement = Measurement(labelled=labelled, input_shapes=rec.input_shapes or None, feeds=feeds)
        result = Pipeline(passes, measurement=measurement).run(source, calibration=reader)
        io.save(result.model, output, inputs=[source])
        print_report(result.report)
        console.print(f"wrote {output}")


def print_recommendation(rec: recommend_lib.Recommendation, model: Path, command: str | None, *, on_data: bool = False) -> None:
    """Family, evidence, CPU, what was checked, the steps kept and dropped with reasons, and the command to run
    (``on_data``: the command checks on calibration samples, so the synthetic inputs' dims do not matter)."""
    from onnxcompress import generation

    console.print(f"[bold]{model}[/bold]: {rec.family} ({'; '.join(rec.evidence)})", highlight=False)
    console.print(f"cpu: {rec.cpu.arch}, int8 support: {rec.cpu.int8_level}", highlight=False)
    proof = rec.proof
    if proof is not None:
        limits = ", ".join(f"{metric} <= {bound:g}" for metric, bound in proof.budget.items())
        console.print(f"checked on this model, step by step: fidelity against the input on {proof.judged_on} ({limits}); "
                      f"latency side by side on {proof.latency_on}", highlight=False, markup=False)
    for index, step in enumerate(rec.steps, 1):
        console.print(f"  {index}. [bold]{step.spec}[/bold] - {step.reason}", highlight=False)
    for check in proof.dropped if proof is not None else []:
        console.print(f"  dropped {check.spec}: {check.reason}", highlight=False, markup=False)
    for line in rec.skipped:
        console.print(f"  [dim]skipped {line}[/dim]", highlight=False)
    if proof is not None:
        values = ", ".join(f"{metric} {value:.3g}" for metric, value in proof.fidelity.items())
        ms = proof.latency_ms
        step = "".join(f"; {what} {ms['input' + suffix]:.3g} ms -> {ms['chain' + suffix]:.3g} ms ({ms['input' + suffix] / ms['chain' + suffix]:.2f}x)"
                       for suffix, what in generation.RUNS.items() if "chain" + suffix in ms)
        console.print(f"measured: the chain against the input: {values}; latency {ms['input']:.3g} ms -> "
                      f"{ms['chain']:.3g} ms ({proof.speedup:.2f}x){step}", highlight=False, markup=False)
        if proof.unseen:
            console.print(f"not proven: {proof.unseen}", highlight=False, markup=False)
        if not proof.task_checked:
            console.print("not checked: fidelity on the model's task. Without --calibration (and --labels) the chain was judged on "
                          "synthetic inputs, which cannot judge it, and steps needing calibration data were not run; give "
                          "--calibration DATA to check them on your data", highlight=False, markup=False)
    if rec.input_shapes and not on_data:
        shapes = ", ".join(f"{name}:{','.join(map(str, dims))}" for name, dims in rec.input_shapes.items())
        console.print(f"dynamic dims: the command checks and measures at {shapes}; set its --input-shape values to "
                      "the sizes the model runs at", highlight=False, markup=False)
    if command is None:
        console.print("no step kept: the model is best left as it is", highlight=False)
    else:
        console.print(f"run it with:\n  {command}", highlight=False, soft_wrap=True, markup=False)
