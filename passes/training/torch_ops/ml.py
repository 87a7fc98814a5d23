"""The ai.onnx.ml ops scikit-learn pipelines run on the way to their weights, as skl2onnx writes them."""

from __future__ import annotations

import onnx_ir as ir
import torch

from onnxcompress.passes.training.torch_ops.attributes import Op


def scaler(node, opset, x):
    """ai.onnx.ml Scaler (scikit-learn's StandardScaler as skl2onnx writes it): ``(x - offset) * scale``."""
    offset = torch.tensor(_floats(node, "offset"), dtype=torch.float32)
    scale = torch.tensor(_floats(node, "scale"), dtype=torch.float32)
    return (x.float() - offset) * scale


def _floats(node: ir.Node, name: str) -> list[float]:
    attribute = node.attributes.get(name)
    return [1.0] if attribute is None else list(attribute.as_floats())


def array_feature_extractor(node, opset, x, indices):
    """ai.onnx.ml ArrayFeatureExtractor: ``x``'s elements at ``indices`` along its last axis (a 1-D ``x`` gives one
    row, as ONNX Runtime does): how skl2onnx turns an ArgMax into class labels."""
    picked = x.index_select(-1, indices.reshape(-1).long())
    return picked.unsqueeze(0) if x.dim() == 1 else picked


def normalizer(node, opset, x):
    """ai.onnx.ml Normalizer: each row divided by its largest value (MAX), its L1 or its L2 norm."""
    x = x.float()
    norm = node.attributes["norm"].as_string() if "norm" in node.attributes else "MAX"
    if norm == "MAX":
        return x / x.amax(dim=-1, keepdim=True)
    return x / (x.abs().sum(dim=-1, keepdim=True) if norm == "L1" else x.pow(2).sum(dim=-1, keepdim=True).sqrt())


ML_OPS: dict[str, Op] = {"Scaler": scaler, "ArrayFeatureExtractor": array_feature_extractor, "Normalizer": normalizer}
