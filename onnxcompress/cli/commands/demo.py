"""``onnxcompress demo``: the bundled end-to-end example (teacher → distilled student → pass chain)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from onnxcompress.cli.app import app, console
from onnxcompress.cli.commands.run import print_report
from onnxcompress.errors import UsageError


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the models, test split and reports."),
    quick: bool = typer.Option(False, "--quick", help="Smoke run: tiny models, a few epochs (about 20 seconds); no target judged."),
    pass_specs: list[str] = typer.Option([], "-p", "--pass", help="Replace the pass chain: PASS[:k=v,...], repeat in order."),
) -> None:
    """Train a digits CNN teacher, distil a small student, compress it, and report every stage."""
    demo_module = _load_demo()
    settings = demo_module.DemoSettings.quick() if quick else demo_module.DemoSettings()
    if pass_specs:
        settings.chain = tuple(pass_specs)
    try:
        result = demo_module.run_demo(out, settings)
    except OSError as exc:
        raise UsageError(f"cannot write the demo into {out}: {exc.strerror or exc}") from None
    print_report(result.pipeline)
    console.print(_stage_table(demo_module.stage_table.stage_rows(result.stages)))
    for line in result.target_lines():
        console.print(line, style="red" if line.startswith("MISSED") else None, markup=False, highlight=False)
    console.print(f"wrote {out}/: teacher.onnx, student.onnx, final.onnx, test.npz, report.json, report.md")


def _load_demo():
    try:
        from onnxcompress.apps import demo as demo_module
    except ModuleNotFoundError as exc:
        raise UsageError(f"the demo needs the torch extra ({exc.name} is missing): pip install 'onnxcompress[torch]'") from None
    return demo_module


def _stage_table(rows: list[dict[str, str]]) -> Table:
    table = Table(*rows[0].keys(), title="stages (speedup vs the teacher)")
    for row in rows:
        table.add_row(*row.values())
    return table
