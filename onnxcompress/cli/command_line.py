"""The command line a command was given, as reports record it (``Provenance.command``)."""

from __future__ import annotations

import shlex

import typer


def command_line(ctx: typer.Context) -> str:
    """``onnxcompress run m.onnx -o out.onnx -p fuse``: the running command rebuilt from its parsed parameters
    (options left at their default are left out), shell-quoted so that it can be run again."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or (param.multiple and not value):
            continue
        values = [str(v) for v in value] if param.multiple else [str(value)]
        if param.param_type_name == "argument":
            words += values
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0])
        else:
            words += [word for v in values for word in (param.opts[0], v)]
    return shlex.join(words)
