"""Graph passes, one module per family; importing this package registers them all."""

from onnxcompress.passes.base import REGISTRY, CompressionPass

__all__ = ["REGISTRY", "CompressionPass"]
