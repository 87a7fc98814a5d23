"""The one line every part of the trainable view refuses with: an op, or an op's variant, torch cannot run here.

A refusal is the model's limit, not a defect: it is a ``UsageError`` (exit 2, one line), raised before
anything is written, by ``graph_module`` for op types and by an op itself for an attribute or input
it does not simulate.
"""

from __future__ import annotations

from onnxcompress.errors import UsageError


def untrainable(what: str) -> UsageError:
    """``cannot train this graph in PyTorch: WHAT`` (raise it)."""
    return UsageError(f"cannot train this graph in PyTorch: {what}")
