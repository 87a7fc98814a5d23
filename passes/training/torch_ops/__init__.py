"""ONNX operators as PyTorch functions: what lets a graph run, and be differentiated, in torch.

Each entry of ``OPS`` takes ``(node, opset, *inputs)`` (inputs are tensors or None for an omitted
optional input) and returns a tensor or a tuple of tensors, one per node output. Integer tensors
that ONNX passes as inputs but torch wants as Python values (shapes, axes, slice bounds) are read
with ``.tolist()``; their values come from ``Shape`` and friends on the same batch, so a graph
whose shapes follow its input keeps following it. An op missing here makes the graph untrainable;
``unsupported_ops`` names them before anything runs.
"""

from onnxcompress.passes.training.torch_ops.registry import DOMAINS, OPS, op, unsupported_ops
from onnxcompress.passes.training.torch_ops.tensors import DTYPES, to_numpy, to_torch

__all__ = ["DOMAINS", "DTYPES", "OPS", "op", "to_numpy", "to_torch", "unsupported_ops"]
