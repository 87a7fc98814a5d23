"""``onnxcompress passes``: the registered passes, one line each, with their options."""

from __future__ import annotations

import typing

from onnxcompress.cli.app import app, console


@app.command("passes")
def list_passes() -> None:
    """List the registered passes and their options, one line each."""
    from onnxcompress.passes import REGISTRY
    from onnxcompress.spec import describe_option

    for name, cls in sorted(REGISTRY.items()):
        hints = typing.get_type_hints(cls.__init__)
        options = ", ".join(describe_option(p, hints.get(n, str)) for n, p in cls.option_parameters().items())
        kind = "exact" if cls.exact else "lossy"
        console.print(f"{name} [{kind}] {cls.summary()} options: {options or '-'}", markup=False, highlight=False, soft_wrap=True)
