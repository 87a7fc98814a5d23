"""``onnxcompress verify``: prove in CI that a model still does its job (exit 0 pass, 1 fail, 2 unusable).

``verify REF CAND`` compares two models, ``verify MODEL --golden G.npz`` compares against stored
outputs, ``--save-golden`` stores the inputs and reference outputs, ``--bisect RECIPE.toml`` names
the first pass of a recipe that breaks the tolerance (``--calibration`` feeds the passes that need
data). Outputs pass on ``--rtol``/``--atol``, or, when any ``--min-*`` gate is given, on every gate
given (``verify.Gates``; ``--rtol``/``--atol`` then gate only when given too).
"""

from __future__ import annotations

import json
from pathlib import Path

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from onnxcompress.cli.app import app, batch_option, calibration_option, console, status, threads_option
from onnxcompress.cli.commands.bench import input_shapes, print_input_shapes
from onnxcompress.defaults import DEFAULT_ATOL, DEFAULT_RTOL
from onnxcompress.errors import CheckFailed, UsageError

if TYPE_CHECKING:
    import numpy as np

    from onnxcompress import verify


@app.command("verify")
def verify_command(
    models: list[Path] = typer.Argument(..., help="REFERENCE CANDIDATE, or one MODEL with --golden/--save-golden/--bisect."),
    golden: Path | None = typer.Option(None, "--golden", help="Compare MODEL with the outputs stored in this .npz."),
    save_golden: Path | None = typer.Option(None, "--save-golden", help="Store the inputs and reference outputs here."),
    bisect: Path | None = typer.Option(None, "--bisect", help="TOML recipe: find its first pass that breaks the tolerance or a gate."),
    calibration: Path | None = calibration_option("--calibration", "With --bisect, for the recipe's passes (its samples are the inputs). "),
    image_size: str | None = calibration_option("--image-size"),
    layout: str | None = calibration_option("--layout"),
    mean: str | None = calibration_option("--mean"),
    std: str | None = calibration_option("--std"),
    tokenizer: Path | None = calibration_option("--tokenizer"),
    inputs: Path | None = typer.Option(None, "--inputs", help=".npz of inputs by name (default: synthetic)."),
    ranges: Path | None = typer.Option(None, "--ranges", help="Calibration ranges JSON: synthesize float inputs inside them."),
    rtol: float | None = typer.Option(
        None, "--rtol", min=0.0, help=f"Relative tolerance (default {DEFAULT_RTOL:g}); with a --min-* gate it gates only if given."),
    atol: float | None = typer.Option(
        None, "--atol", min=0.0, help=f"Absolute tolerance (default {DEFAULT_ATOL:g}); with a --min-* gate it gates only if given."),
    min_cosine: float | None = typer.Option(None, "--min-cosine", help="Gate: each output's cosine similarity to the reference is at least this (-1..1)."),
    min_snr: float | None = typer.Option(None, "--min-snr", help="Gate: each output's signal-to-noise ratio is at least this many dB."),
    min_topk: float | None = typer.Option(
        None, "--min-topk-agreement", help="Gate: [batch, classes] outputs' top-k agreement is at least this (0..1); other outputs: not applicable."),
    top_k: int = typer.Option(5, "--top-k", help="k of the top-k agreement (1: the arg-max agrees)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON."),
    junit_out: Path | None = typer.Option(None, "--junit", help="Write JUnit XML (one test case per check and output)."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Shape of a synthetic input with dynamic dims: NAME:d0,d1,..."),
    batch: int = batch_option(),
    seed: int = typer.Option(0, "--seed"),
    threads: int = threads_option(),
) -> None:
    """Verify structure and outputs of a model against a reference model or a golden file.

    An output passes on --rtol/--atol when no --min-* gate is given; with gates, when it meets every gate
    given (and --rtol/--atol only if those are given too).
    """
    from onnxcompress import generation, io, runtime, verify
    from onnxcompress.cli.commands.run import DataOptions, check_samples, open_calibration
    from onnxcompress.junit import junit_xml

    _check_arguments(models, golden, save_golden, bisect, inputs, calibration)
    gates = verify.Gates(min_cosine, min_snr, min_topk, top_k)
    loaded, states = map(list, zip(*(io.load_with_snapshot(m) for m in models)))
    for out in filter(None, (save_golden, json_out, junit_out)):
        io.check_output_path(out, loaded)
    reader = open_calibration(calibration, loaded[0], DataOptions(image_size, layout, mean, std, tokenizer))
    if golden:
        feeds, expected, beside = verify.read_golden(golden, loaded[0])
    else:
        if inputs:
            feeds = io.load_arrays(inputs, loaded[0])
        else:
            feeds = check_samples(reader, loaded[0], batch) if reader else _synthetic(loaded[0], ranges, input_shape, batch, seed)
        verify.check_feed_names(loaded[0], feeds)
        print_input_shapes(getattr(feeds, "dynamic", {}))
        expected = runtime.run(states[0], feeds, threads=threads, optimization="disable")
        beside = []  # bisect runs its own
        if not bisect:
            beside = generation.expected_beside(loaded[0], feeds, threads, states[0])
            for note in generation.unchecked_beside(loaded[0], feeds, [suffix for suffix, _, _ in beside]):
                console.print(f"[dim]{note}[/dim]", highlight=False)
    if save_golden:
        verify.save_golden(save_golden, feeds, expected, beside=beside, models=loaded)
        also = "".join(f", and the run{suffix}" for suffix, _, _ in beside)
        console.print(f"wrote golden {save_golden} ({len(feeds)} input(s), {len(expected)} output(s){also})")
    with status("verifying"):
        if bisect:
            result = _bisect(loaded[0], bisect, feeds, rtol, atol, gates, reader, threads)
        else:
            which = -1 if (golden or len(loaded) == 2) else 0
            result = verify.verify_against(loaded[which], feeds, expected, rtol=rtol, atol=atol, gates=gates, threads=threads,
                                           state=states[which], beside=beside)
    _print_result(result)
    if json_out:
        record = {**result.to_dict(), "input_shapes": input_shapes(feeds)}
        io.write_bytes(json_out, json.dumps(record, indent=2).encode(), inputs=loaded)
    if junit_out:
        io.write_bytes(junit_out, junit_xml(result).encode(), inputs=loaded)
    if not result.passed:
        failures = result.failures()
        raise CheckFailed(f"verification failed ({len(failures)} failure(s)); first: {failures[0]}")
    console.print(f"verification passed ({result.criteria()})", highlight=False, markup=False)


def _check_arguments(models, golden, save_golden, bisect, inputs, calibration) -> None:
    if len(models) > 2:
        raise UsageError(f"verify takes one or two models, got {len(models)}")
    single = len(models) == 1
    if golden and not single:
        raise UsageError("--golden compares ONE model with stored outputs; give one model")
    if golden and (inputs or save_golden):
        raise UsageError("--golden already holds the inputs; do not combine it with --inputs or --save-golden")
    if bisect and not single:
        raise UsageError("--bisect RECIPE takes one model (the pipeline's input)")
    if single and not (golden or save_golden or bisect):
        raise UsageError("give REFERENCE CANDIDATE, or one MODEL with --golden, --save-golden or --bisect")
    if calibration and not bisect:
        raise UsageError("--calibration feeds the passes of --bisect RECIPE; use --inputs for the data to compare on")


def _synthetic(model, ranges: Path | None, input_shape: list[str], batch: int, seed: int) -> dict[str, np.ndarray]:
    from onnxcompress import runtime, verify

    known = None
    if ranges:
        from onnxcompress.calibration import load_ranges

        known = load_ranges(ranges, model)
    shapes = runtime.parse_input_shapes(input_shape)
    return verify.synthesize_inputs(model, known, batch=batch, shapes=shapes, seed=seed)


def _bisect(model, recipe: Path, feeds, rtol: float | None, atol: float | None, gates: verify.Gates, reader, threads: int) -> verify.VerifyResult:
    from onnxcompress import spec, verify
    from onnxcompress.bisect import bisect_passes

    outcome = bisect_passes(model, spec.load_recipe(recipe), feeds, rtol=rtol, atol=atol, gates=gates, calibration=reader, threads=threads)
    for step in outcome.steps:
        console.print(f"{'ok  ' if step.passed else 'FAIL'} {step.pass_name} {step.error}", highlight=False, markup=False)
    failed = outcome.first_failure
    if failed is None:
        last = outcome.steps[-1].result
        console.print(f"all {len(outcome.steps)} pass(es) keep the outputs within {last.criteria()}", highlight=False, markup=False)
        return last
    console.print(f"first failing pass: {failed.pass_name}", markup=False)
    if failed.result is None:
        check = verify.CheckResult(f"pass {failed.pass_name}", False, failed.error)
        return verify.VerifyResult.judged([check], [], rtol=rtol, atol=atol, gates=gates)
    failed.result.checks.insert(0, verify.CheckResult(f"pass {failed.pass_name}", False, "first pass after which the model fails verification"))
    return failed.result


def _print_result(result: verify.VerifyResult) -> None:
    for check in result.checks:
        console.print(f"{_mark(check.passed)} {check.name}", highlight=False)
    k = result.gates.top_k
    table = Table("output", "result", "max abs err", "cosine", "SNR dB", "top-1", *([f"top-{k}"] if k > 1 else []), "min atol", "min rtol")
    for o in result.outputs:
        agreement = [_share(o.top1_agreement)] + ([_share(o.topk_agreement)] if k > 1 else [])
        table.add_row(o.name, _mark(o.passed), f"{o.max_abs_err:.3g}", f"{o.cosine:.6f}", f"{o.snr_db:.1f}",
                      *agreement, f"{o.min_atol:.3g}", f"{o.min_rtol:.3g}")
    console.print(table)
    for line in result.failures():
        console.print(f"FAIL {line}", markup=False, highlight=False)
    for o in result.outputs:
        if o.passed and o.detail:
            console.print(f"note output {o.name!r}: {o.detail}", markup=False, highlight=False)


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _mark(passed: bool) -> str:
    return "pass" if passed else "[red]FAIL[/red]"
