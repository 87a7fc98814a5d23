"""``onnxcompress passes [NAME]``: the registered passes as a table that wraps to the terminal, or one pass option by option."""

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
    """List the registered passes with what they do and their options; with NAME, each option's type, default, allowed values and help."""
    from onnxcompress.passes import REGISTRY
    from onnxcompress.passes.base import type_text
    from onnxcompress.spec import pass_class, spell

    if name is None:
        table = Table("pass", "kind", "what it does", "options", caption="onnxcompress passes NAME: each option's type, default, allowed values and help")
        for registered, cls in sorted(REGISTRY.items()):
            table.add_row(*map(Text, (registered, _kind(cls), cls.summary(), ", ".join(cls.option_specs()) or "-")))
        console.print(table)
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
    return f"{name} [{_kind(cls)}] {cls.summary()}"


def _kind(cls: type) -> str:
    return "exact" if cls.exact else "lossy"


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)
