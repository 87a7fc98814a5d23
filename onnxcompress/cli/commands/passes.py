"""``onnxcompress passes``: the registered passes, one line each, with their options."""

from __future__ import annotations

import typing

from rich.table import Table

from onnxcompress.cli.app import app, console
from onnxcompress.passes import REGISTRY
from onnxcompress.spec import describe_option


@app.command("passes")
def list_passes() -> None:
    """List the registered passes and their options."""
    table = Table("pass", "kind", "what it does", "options")
    for name, cls in sorted(REGISTRY.items()):
        hints = typing.get_type_hints(cls.__init__)
        options = ", ".join(describe_option(p, hints.get(n, str)) for n, p in cls.option_parameters().items())
        table.add_row(name, "exact" if cls.exact else "lossy", cls.summary(), options or "-")
    console.print(table)
