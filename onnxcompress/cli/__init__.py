"""The ``onnxcompress`` command line: one module per command, errors as one line and an exit code.

Exit codes: 0 success, 1 a check ran and failed, 2 unusable input or options.
"""

from __future__ import annotations

import os
import sys

import click

from onnxcompress.cli import commands  # noqa: F401  (registers the commands)
from onnxcompress.cli.app import app, err_console
from onnxcompress.errors import OnnxCompressError

DEBUG_ENV = "ONNXCOMPRESS_DEBUG"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    try:
        code = app(args=argv, prog_name="onnxcompress", standalone_mode=False)
    except OnnxCompressError as exc:
        return _fail(str(exc), exc.exit_code)
    except click.exceptions.Abort:
        return _fail("interrupted", 130)
    except click.ClickException as exc:
        return _fail(exc.format_message(), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # last resort: one line, never a traceback dump
        if os.environ.get(DEBUG_ENV):
            raise
        return _fail(f"{type(exc).__name__}: {_first_line(exc)} (set {DEBUG_ENV}=1 for the traceback)", 2)
    return code if isinstance(code, int) else 0


def _fail(message: str, code: int) -> int:
    err_console.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    return code


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def console_script() -> None:
    """``sys.exit`` wrapper used by the installed script."""
    sys.exit(main())
