"""Structured channel removal on the ONNX graph (``prune-channels``)."""

from onnxcompress.passes.pruning.prune_channels import PruneChannels

__all__ = ["PruneChannels"]
