"""Decomposed layer normalisation (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul[/Add]) →
``LayerNormalization`` (opset ≥ 17); also as tf2onnx writes Keras' (``ScaledLayerNormFusion``).

Ours rather than onnxscript's ``LayerNormFusion``, which matches only ReduceMean with ``axes`` as an
input (opset ≥ 18, so none of the opset-17 exports we fuse) and does not check that the scale and
bias are one value per normalised feature (a ``[1, S, D]`` scale would be silently broadcast
differently by ``LayerNormalization``).
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxcompress.passes.values import FLOAT_TYPES, constant, last_dim, rank

NAME = "layer-norm"
MIN_OPSET = 17
TRIGGER_OPS = frozenset({"ReduceMean", "GlobalAveragePool"})


class LayerNormFusion(pattern.RewriteRuleClassBase):
    """Match ``(x - mean(x)) / sqrt(var(x) + eps) * scale + bias`` over the last axis."""

    def pattern(self, op, x, epsilon, scale, bias):
        mean = op.ReduceMean(x, _allow_other_inputs=True, _outputs=["mean"])
        deviation = op.Sub(x, mean)
        squared = pattern.OrValue([op.Pow(deviation, 2.0), op.Mul(deviation, deviation)])
        variance = op.ReduceMean(squared, _allow_other_inputs=True, _outputs=["variance"])
        normalized = op.Div(deviation, op.Sqrt(op.Add(variance, epsilon)))
        return op.Add(op.Mul(normalized, scale), bias)

    def check(self, context, x, epsilon, scale, bias, mean, variance, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if x.dtype not in FLOAT_TYPES:
            return result.fail(f"dtype {x.dtype} is not a float type")
        if rank(x) is None or not all(_reduces_last_axis(v.producer(), rank(x)) for v in (mean, variance)):
            return result.fail("the ReduceMeans do not both reduce only the last axis with keepdims")
        eps = constant(epsilon)
        if eps is None or eps.size != 1:
            return result.fail("epsilon is not a constant scalar")
        for name, value in (("scale", scale), ("bias", bias)):
            array = constant(value)
            if array is None or array.dtype != x.dtype.numpy() or _feature_vector(array, x) is None:
                return result.fail(f"{name} is not a constant vector of the last dimension's size")
        return result

    def rewrite(self, op, x, epsilon, scale, bias, **_):
        scale, bias = (_as_feature_vector(op, value, x) for value in (scale, bias))
        return op.LayerNormalization(x, scale, bias, axis=-1, epsilon=float(constant(epsilon).item()))


class ScaledLayerNormFusion(LayerNormFusion):
    """Match ``x·s + (bias − mean(x)·s)`` with ``s = scale / sqrt(var(x) + eps)``, as tf2onnx writes Keras'
    ``LayerNormalization`` (means as ``GlobalAveragePool`` over a rank-3 input's last axis); checked as above."""

    def pattern(self, op, x, epsilon, scale, bias):
        mean = _mean_of_last_axis(op, x, "mean")
        deviation = op.Sub(x, mean)
        squared = pattern.OrValue([op.Pow(deviation, 2.0), op.Mul(deviation, deviation)])
        variance = _mean_of_last_axis(op, squared, "variance")
        scaled = op.Mul(op.Reciprocal(op.Sqrt(op.Add(variance, epsilon))), scale)
        return op.Add(op.Mul(x, scaled), op.Add(op.Mul(op.Neg(mean), scaled), bias))


def _mean_of_last_axis(op, value, name: str):
    """A mean of ``value`` as ReduceMean or GlobalAveragePool writes it, its output bound to ``name`` (``check``
    proves it is over the last axis)."""
    return pattern.OrValue([op.ReduceMean(value, _allow_other_inputs=True, _outputs=[name]), op.GlobalAveragePool(value, _outputs=[name])])


def _feature_vector(array, x: ir.Value):
    """``array`` as the ``[D]`` vector LayerNormalization takes when it is one value per feature of ``x``'s last axis
    (shaped ``[D]`` or ``[1, 1, D]``), else None."""
    features, x_rank = last_dim(x), rank(x)
    if features is None or x_rank is None or array.ndim > x_rank or array.shape[-1:] != (features,) or any(d != 1 for d in array.shape[:-1]):
        return None
    return array.reshape(features)


def _as_feature_vector(op, value: ir.Value, x: ir.Value) -> ir.Value:
    """``value`` itself when it is a ``[D]`` vector, else a ``[D]`` initializer of its values."""
    array = constant(value)
    if array.ndim == 1:
        return value
    return op.initializer(ir.tensor(_feature_vector(array, x)), name=f"{value.name}_vector")


def _reduces_last_axis(node: ir.Node, x_rank: int) -> bool:
    """True when a ReduceMean reduces exactly the last axis and keeps dims (attribute or input axes), or a
    GlobalAveragePool averages a rank-3 input (over its one spatial axis, the last)."""
    if node.op_type == "GlobalAveragePool":
        return x_rank == 3
    if node.attributes.get_int("keepdims", 1) != 1:
        return False
    axes_attr = node.attributes.get("axes")
    if axes_attr is not None:
        axes = list(axes_attr.as_ints())
    else:
        axes_input = constant(node.inputs[1]) if len(node.inputs) > 1 else None
        if axes_input is None:
            return False
        axes = [int(a) for a in axes_input.ravel()]
    return len(axes) == 1 and axes[0] in (-1, x_rank - 1)


RULES = [LayerNormFusion.rule(), ScaledLayerNormFusion.rule()]
