"""Errors the user can act on, each mapped to the CLI's exit code.

The CLI prints one line for these (never a traceback): exit 2 for unusable input or options,
exit 1 for a check that ran and failed. Any other exception is a defect in onnxcompress, which
the CLI reports as a bug with exit 70 (``onnxcompress.cli`` lists every exit code).
"""

from __future__ import annotations


class OnnxCompressError(Exception):
    """Base of every error onnxcompress reports to the user as a single line."""

    exit_code = 2


class UsageError(OnnxCompressError):
    """Unusable input: a bad model file, an unknown pass or option, an unwritable output."""

    exit_code = 2


class CheckFailed(OnnxCompressError):
    """A verification ran and the model failed it (wrong outputs, invalid graph after a pass)."""

    exit_code = 1


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of an error's message (or of a text), for one-line reports.

    An exception with an empty message reads as its type's name, so the line is never blank.
    """
    text = error if isinstance(error, str) else str(error)
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line or ("" if isinstance(error, str) else type(error).__name__)
