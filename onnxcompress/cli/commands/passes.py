"""``onnxcompress passes [NAME]``: the registered passes one line each, or one pass option by option."""

from __future__ import annotations

import inspect

import typer
from rich.table import Table
from rich.text import Text

from onnxcompress.cli.app import app, console


@app.command("passes")
def list_passes(
    name: str | None = typer.Argument(None, help="A pass to describe option by option (e.g. quantize-static)."),
) -> None:
    """List the registered passes and their options, one line each; with NAME, each option's type, default, allowed values and help."""
    from onnxcompress.passes import REGISTRY
    from onnxcompress.passes.base import type_text
    from onnxcompress.spec import pass_class, spell

    if name is None:
        for registered, cls in sorted(REGISTRY.items()):
            options = ", ".join(option.describe() for option in cls.option_specs().values())
            _say(f"{_heading(registered, cls)} options: {options or '-'}")
        return
    cls = pass_class(name)
    _say(_heading(name, cls))
    options = cls.option_specs().values()
    if not options:
        _say("no options")
        return
    table = Table("option", "type", "default", "allowed values", "help")
    for option in options:
        allowed = ", ".join(map(spell, option.choices)) if option.choices is not None else "-"
        default = "required" if option.default is inspect.Parameter.empty else spell(option.default)
        cells = (option.name, type_text(option.annotation, values=False), default, allowed, option.help)
        table.add_row(*map(Text, cells))
    console.print(table)


def _heading(name: str, cls: type) -> str:
    """``name [exact|lossy] summary``."""
    return f"{name} [{'exact' if cls.exact else 'lossy'}] {cls.summary()}"


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)
