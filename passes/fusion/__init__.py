"""Fusion: multi-op patterns rewritten into single standard ONNX ops, one rule family per module."""

from onnxcompress.passes.fusion.fuse import Fuse

__all__ = ["Fuse"]
