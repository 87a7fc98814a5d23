"""Every op the view runs, by domain and op type: what ``op`` looks a node up in, and what ``unsupported_ops`` reports."""

from __future__ import annotations

from collections.abc import Iterable

import onnx_ir as ir
import torch
import torch.nn.functional as F

from onnxcompress.passes.training import fake_quant
from onnxcompress.passes.training.torch_ops.arithmetic import (
    amax, amin, arg_extreme, batch_norm, celu, clip, cumsum, dropout, einsum, gelu, gemm, group_norm, instance_norm, is_inf, layer_norm, log_softmax, mean, mod,
    prelu, prod, reduce, selu, shrink, softmax, thresholded_relu, variadic,
)
from onnxcompress.passes.training.torch_ops.attention import attention
from onnxcompress.passes.training.torch_ops.attributes import Op, attr_float, binary, unary
from onnxcompress.passes.training.torch_ops.contrib import CONTRIB_OPS, rms_norm
from onnxcompress.passes.training.torch_ops.ml import ML_OPS
from onnxcompress.passes.training.torch_ops.recurrent import gru, lstm, rnn
from onnxcompress.passes.training.torch_ops.resize import resize
from onnxcompress.passes.training.torch_ops.shapes import (
    cast, concat, constant_of_shape, expand, flatten, gather, gather_nd, range_, reshape, shape, slice_, split, squeeze, tile, transpose,
    trilu, unsqueeze, where,
)
from onnxcompress.passes.training.torch_ops.spatial import conv, lrn, pad, pool


OPS: dict[str, Op] = {
    "Conv": conv, "Gemm": gemm, "MatMul": binary(torch.matmul), "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm, "InstanceNormalization": instance_norm, "GroupNormalization": group_norm, "MaxPool": pool, "AveragePool": pool, "LRN": lrn,
    "GlobalAveragePool": unary(lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)),
    "GlobalMaxPool": unary(lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)),
    "Add": binary(torch.add), "Sub": binary(torch.sub), "Mul": binary(torch.mul),
    "Div": binary(lambda a, b: torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b),
    "Pow": binary(torch.pow), "Mod": mod, "Equal": binary(torch.eq), "Greater": binary(torch.gt), "Less": binary(torch.lt),
    "GreaterOrEqual": binary(torch.ge), "LessOrEqual": binary(torch.le), "And": binary(torch.logical_and),
    "Or": binary(torch.logical_or), "Not": unary(torch.logical_not), "Where": where,
    "Max": variadic(torch.maximum), "Min": variadic(torch.minimum), "Sum": variadic(torch.add),
    "Relu": unary(torch.relu), "Sigmoid": unary(torch.sigmoid), "Tanh": unary(torch.tanh), "Erf": unary(torch.erf),
    "Exp": unary(torch.exp), "Log": unary(torch.log), "Sqrt": unary(torch.sqrt), "Neg": unary(torch.neg),
    "Abs": unary(torch.abs), "Reciprocal": unary(torch.reciprocal), "Floor": unary(torch.floor), "Ceil": unary(torch.ceil),
    "Softplus": unary(F.softplus), "Identity": unary(lambda x: x), "Dropout": dropout,
    "LeakyRelu": lambda node, opset, x: F.leaky_relu(x, attr_float(node, "alpha", 0.01)),
    "Elu": lambda node, opset, x: F.elu(x, attr_float(node, "alpha", 1.0)),
    "HardSigmoid": lambda node, opset, x: (attr_float(node, "alpha", 0.2) * x + attr_float(node, "beta", 0.5)).clamp(0, 1),
    "HardSwish": unary(lambda x: x * (x / 6 + 0.5).clamp(0, 1)), "Gelu": gelu, "Softmax": softmax, "LogSoftmax": log_softmax,
    "Clip": clip, "Reshape": reshape, "Flatten": flatten, "Transpose": transpose, "Unsqueeze": unsqueeze, "Squeeze": squeeze,
    "ReduceMean": reduce(lambda x, d, k: x.mean(dim=d, keepdim=k), 18), "ReduceSum": reduce(lambda x, d, k: x.sum(dim=d, keepdim=k), 13),
    "ReduceL2": reduce(lambda x, d, k: x.pow(2).sum(dim=d, keepdim=k).sqrt(), 18),
    "ReduceSumSquare": reduce(lambda x, d, k: x.pow(2).sum(dim=d, keepdim=k), 18),
    "ReduceMax": reduce(amax, 18), "ReduceMin": reduce(amin, 18), "Gather": gather, "GatherND": gather_nd, "Slice": slice_,
    "Split": split, "Concat": concat, "Cast": cast, "Expand": expand, "Tile": tile, "ConstantOfShape": constant_of_shape,
    "Range": range_, "Shape": shape, "Size": lambda node, opset, x: torch.tensor(x.numel(), dtype=torch.int64),
    "Pad": pad, "Resize": resize, "Trilu": trilu, "ArgMax": arg_extreme, "ArgMin": arg_extreme, "CumSum": cumsum, "Attention": attention,
    "PRelu": prelu, "Selu": selu, "Celu": celu, "ThresholdedRelu": thresholded_relu, "Shrink": shrink,
    "Mish": unary(F.mish), "Softsign": unary(F.softsign), "Sign": unary(torch.sign), "Round": unary(torch.round),
    "Sin": unary(torch.sin), "Cos": unary(torch.cos), "Tan": unary(torch.tan), "Asin": unary(torch.asin), "Acos": unary(torch.acos),
    "Atan": unary(torch.atan), "Sinh": unary(torch.sinh), "Cosh": unary(torch.cosh), "Asinh": unary(torch.asinh),
    "Acosh": unary(torch.acosh), "Atanh": unary(torch.atanh), "IsNaN": unary(torch.isnan), "IsInf": is_inf,
    "Xor": binary(torch.logical_xor), "Mean": mean, "Einsum": einsum, "LSTM": lstm, "GRU": gru, "RNN": rnn,
    "ReduceProd": reduce(prod, 18), "ReduceL1": reduce(lambda x, d, k: x.abs().sum(dim=d, keepdim=k), 18),
    "ReduceLogSum": reduce(lambda x, d, k: x.sum(dim=d, keepdim=k).log(), 18),
    "ReduceLogSumExp": reduce(lambda x, d, k: x.logsumexp(dim=d, keepdim=k) if x.numel() else x.exp().sum(dim=d, keepdim=k).log(), 18),
    "QuantizeLinear": fake_quant.quantize_linear, "DequantizeLinear": fake_quant.dequantize_linear,
    "RMSNormalization": rms_norm, "SimplifiedLayerNormalization": rms_norm,  # the latter: ORT's, in the default domain
}


DOMAINS: dict[str, dict[str, Op]] = {"": OPS, "ai.onnx": OPS, "ai.onnx.ml": ML_OPS, "com.microsoft": CONTRIB_OPS}


def op(node: ir.Node) -> Op | None:
    """What runs ``node`` in torch (by its domain and op type), or None."""
    return DOMAINS.get(node.domain, {}).get(node.op_type)


def unsupported_ops(nodes: Iterable[ir.Node]) -> list[str]:
    """The op types among ``nodes`` that cannot run in torch (outside the default domain named with theirs), sorted."""
    return sorted({f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                   for n in nodes if n.op_type != "Constant" and op(n) is None})
