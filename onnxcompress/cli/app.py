"""The typer application every command module registers itself on, and shared console helpers."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

import typer
from rich.console import Console

app = typer.Typer(
    name="onnxcompress",
    help="Graph-level ONNX optimization and compression, verified and benchmarked after every pass.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
PIPE_WIDTH = 200  # tables piped to a file or CI log are not squeezed into 80 columns
console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on stderr while slow work runs (only on a terminal), then the elapsed time."""
    start = time.perf_counter()
    with err_console.status(message):
        yield
    if err_console.is_terminal:
        err_console.print(f"[dim]{message} done in {time.perf_counter() - start:.1f} s[/dim]")
