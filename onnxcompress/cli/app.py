"""The typer application every command module registers itself on, its shared options, and console helpers."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from onnxcompress.defaults import DEFAULT_THREADS, MAX_THREADS, MEMORY_BUDGET_ENV

app = typer.Typer(
    name="onnxcompress",
    help="Graph-level ONNX optimization and compression, verified and benchmarked after every pass.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)
MAX_BATCH = 1024  # synthetic inputs of an ImageNet-sized model stay under a gigabyte
LOG_ENV = "ONNXCOMPRESS_LOG"  # default progress level: info, or warning to silence it
PIPE_WIDTH = 200  # tables piped to a file or CI log are not squeezed into 80 columns
console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)


def _print_version(requested: bool) -> None:
    if requested:
        console.print(f"onnxcompress {metadata.version('onnxcompress')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="More progress detail on stderr."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress lines on stderr, only results and errors."),
    memory_budget: str = typer.Option(
        None, "--memory-budget", metavar="SIZE",
        help="Most memory for input arrays (calibration .npz, synthetic inputs, sparse tensors made dense), e.g. 8GB; "
             f"default a quarter of the available memory, at most 4 GB. Also {MEMORY_BUDGET_ENV}."),
) -> None:
    """Options of the app itself (the help text is the app's)."""
    show_progress(logging.DEBUG if verbose else logging.WARNING if quiet else _default_level())
    if memory_budget is not None:
        from onnxcompress.io import parse_size

        parse_size(memory_budget, "--memory-budget")
        os.environ[MEMORY_BUDGET_ENV] = memory_budget


class ProgressHandler(logging.Handler):
    """Progress records on stderr: dim on a terminal, plain lines with the elapsed time when piped (CI logs)."""

    def __init__(self) -> None:
        super().__init__()
        self.start = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if err_console.is_terminal:
            err_console.print(f"[dim]{escape(message)}…[/dim]", highlight=False)
        else:
            err_console.print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", markup=False, highlight=False)


def show_progress(level: int) -> None:
    """Route the ``onnxcompress`` logger's progress to stderr at ``level`` (one handler however often called), and
    only there: ORT's quantizer logs to the root logger, which then gets a stderr handler that would repeat each line."""
    logger = logging.getLogger("onnxcompress")
    logger.handlers = [handler for handler in logger.handlers if not isinstance(handler, ProgressHandler)] + [ProgressHandler()]
    logger.setLevel(level)
    logger.propagate = False


def _default_level() -> int:
    """INFO, or the level named by ``ONNXCOMPRESS_LOG`` (e.g. ``warning`` to silence progress in scripts)."""
    name = os.environ.get(LOG_ENV, "info").upper()
    return getattr(logging, name) if isinstance(getattr(logging, name, None), int) else logging.INFO


def threads_option() -> Any:
    """``--threads``: ORT intra-op threads, from 1 to four per core (at most 256); shared by every command."""
    return typer.Option(DEFAULT_THREADS, "--threads", min=1, max=MAX_THREADS, help="ONNX Runtime intra-op threads.")


def batch_option() -> Any:
    """``--batch``: rows of each synthesized input, from 1 to ``MAX_BATCH``; shared by every command."""
    return typer.Option(1, "--batch", min=1, max=MAX_BATCH, help="Batch size of the synthesized inputs.")


def workers_option() -> Any:
    """``--workers``: compression tasks at once, above 1 on a local Ray runtime (``compare``, ``search``)."""
    return typer.Option(1, "--workers", min=1, max=MAX_THREADS,
                        help="Compression tasks at once: above 1 they run on a local Ray runtime of that many CPUs "
                             "(pip install 'onnxcompress\\[scale]'); latency is still timed side by side here, afterwards.")


def ray_address_option() -> Any:
    """``--ray-address``: run the compression tasks on an existing Ray cluster (``compare``, ``search``)."""
    return typer.Option(None, "--ray-address", metavar="ADDR",
                        help="Run the compression tasks on the Ray cluster at ADDR (e.g. auto, ray://host:10001) "
                             "instead of this machine; onnxcompress must be installed there.")


CALIBRATION_HELP = {  # --calibration and the options saying how to read its data
    "--calibration": "Calibration data: an .npz (keys = input names, first axis = samples), a folder of images, "
                     "or a .txt file of sentences, one per line (with --tokenizer).",
    "--image-size": "Image folder: H,W to resize to (default: the model's input).",
    "--layout": "Image folder: nchw or nhwc (default: read from the model's input).",
    "--mean": "Image folder: per-channel mean subtracted after scaling to [0, 1], e.g. 0.485,0.456,0.406 (default 0).",
    "--std": "Image folder: per-channel std divided by after the mean, e.g. 0.229,0.224,0.225 (default 1).",
    "--tokenizer": "Text calibration file: the folder of its tokenizer.json.",
}


def calibration_option(flag: str, purpose: str = "") -> Any:
    """``--calibration`` or an option of ``CALIBRATION_HELP`` on how to read its data, declared once for every
    command that takes calibration data; ``purpose`` leads the help."""
    return typer.Option(None, flag, help=f"{purpose}{CALIBRATION_HELP[flag]}")


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on stderr while slow work runs (only on a terminal), then the elapsed time."""
    start = time.perf_counter()
    with err_console.status(message):
        yield
    if err_console.is_terminal:
        err_console.print(f"[dim]{message} done in {time.perf_counter() - start:.1f} s[/dim]")
