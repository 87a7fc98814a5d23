"""Structured channel removal on the ONNX graph (``prune-channels``)."""

from onnxcompress.passes.pruning.pass_ import PruneChannels

__all__ = ["PruneChannels"]
