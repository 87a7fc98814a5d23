"""erf GELU ``0.5·x·(1 + erf(x/√2))`` and tanh GELU ``0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))``
→ the standard ``Gelu`` op (opset ≥ 20; ``approximate="tanh"`` for the second).

Ours: onnxscript only fuses GELU into ORT's contrib ops (``com.microsoft``), and this project
targets standard ONNX by default so the result runs on any runtime.
"""

from __future__ import annotations

import abc
import math

from onnxscript.rewriter import pattern

from onnxcompress.passes.values import FLOAT_TYPES

NAME = "gelu"
MIN_OPSET = 20
TRIGGER_OPS = frozenset({"Erf", "Tanh"})
SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
TANH_CUBIC = 0.044715


class _GeluBase(pattern.RewriteRuleClassBase):
    """Shared check and the two places the 0.5 factor is found: ``(x·cdf)·0.5`` or ``(x·0.5)·cdf``."""

    approximate = "none"

    def __init__(self, half_last: bool) -> None:
        super().__init__(name=f"{type(self).__name__}{'HalfLast' if half_last else 'HalfFirst'}")
        self.half_last = half_last

    def pattern(self, op, x):
        cdf = op.Add(self.activation(op, x), 1.0)
        return op.Mul(op.Mul(x, cdf), 0.5) if self.half_last else op.Mul(op.Mul(x, 0.5), cdf)

    @abc.abstractmethod
    def activation(self, op, x):
        """The erf or tanh term of the pattern."""

    def check(self, context, x, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if x.dtype not in FLOAT_TYPES:
            return result.fail(f"dtype {x.dtype} is not a float type")
        return result

    def rewrite(self, op, x, **_):
        return op.Gelu(x, approximate=self.approximate)


class ErfGelu(_GeluBase):
    """Exact GELU written with ``Erf``."""

    def activation(self, op, x):
        scaled = pattern.OrValue([op.Div(x, SQRT_2), op.Mul(x, 1.0 / SQRT_2)])
        return op.Erf(scaled)


class TanhGelu(_GeluBase):
    """GELU's tanh approximation."""

    approximate = "tanh"

    def activation(self, op, x):
        cube = pattern.OrValue([op.Pow(x, 3.0), op.Mul(op.Mul(x, x), x)])
        inner = op.Mul(op.Add(x, op.Mul(cube, TANH_CUBIC)), SQRT_2_OVER_PI)
        return op.Tanh(inner)


RULES = [rule.rule(half_last=last) for rule in (ErfGelu, TanhGelu) for last in (True, False)]
