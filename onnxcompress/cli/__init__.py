"""The ``onnxcompress`` command line: one module per command, errors as one line and an exit code.

Exit codes:

- 0: success.
- 1: a check ran and failed (``CheckFailed``: wrong outputs, a broken graph).
- 2: unusable input or options: typer's usage errors (usage line, the option named, "Try ... -h")
  and our ``UsageError`` (a bad model file, an unknown pass, an unwritable output); also a
  ``MemoryError`` the budgets did not foresee (the model or inputs are too large for this machine,
  not a defect): "not enough memory: ...".
- 70: a defect in onnxcompress itself (any other exception; sysexits' ``EX_SOFTWARE``): one line
  saying so, with the exception's type and first line; ``ONNXCOMPRESS_DEBUG=1`` adds the traceback.
- 130: interrupted (Ctrl-C).

Declaring the commands loads no ONNX tooling: each command imports what it uses when it runs, so
``onnxcompress --help`` and ``--version`` stay light.

The app runs in typer's standalone mode, so typer reports its own usage errors and ends with
``SystemExit``; no click exception class is named here (typer vendors its own click).
"""

from __future__ import annotations

import os
import sys
import traceback

from onnxcompress.cli import commands  # noqa: F401  (registers the commands)
from onnxcompress.cli.app import app, err_console
from onnxcompress.errors import OnnxCompressError, first_line

DEBUG_ENV = "ONNXCOMPRESS_DEBUG"
EXIT_USAGE = 2
EXIT_BUG = 70
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    try:
        app(args=argv, prog_name="onnxcompress", standalone_mode=True)
    except SystemExit as done:  # typer ends every run this way, usage errors (exit 2) included
        return _exit_code(done.code)
    except OnnxCompressError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except MemoryError as exc:
        detail = first_line(str(exc)) or "an allocation failed"
        return _fail(f"not enough memory: {detail} (pass smaller inputs or --input-shape, or use a machine with more memory)", EXIT_USAGE)
    except Exception as exc:  # anything else is a defect in onnxcompress, never a bad input
        return report_bug(exc)
    return 0


def report_bug(exc: Exception) -> int:
    """Say that ``exc`` is a bug in onnxcompress (traceback only with ``ONNXCOMPRESS_DEBUG`` set); return 70."""
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=sys.stderr)
    hint = "traceback above" if os.environ.get(DEBUG_ENV) else f"set {DEBUG_ENV}=1 for the traceback"
    return _fail(f"bug in onnxcompress: {type(exc).__name__}: {first_line(str(exc))} ({hint}; please report it)", EXIT_BUG)


def _exit_code(code: object) -> int:
    """``SystemExit.code`` as a process exit code (``None`` is success)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _fail(message: str, code: int) -> int:
    err_console.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    return code



def console_script() -> None:
    """``sys.exit`` wrapper used by the installed script."""
    sys.exit(main())
