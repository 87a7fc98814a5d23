"""The integer types and range reduction to quantize to, chosen from this CPU's instruction set.

ORT's x86 integer kernels are fastest with U8 activations and S8 weights (U8S8). Without VNNI
(``avx512_vnni`` / ``avx_vnni``) the AVX2 kernels add each pair of u8·s8 products in 16 bits with
saturation (``vpmaddubsw``), so 8-bit weights can overflow; weights are reduced to 7 bits there
(ORT's [-64, 64]), with VNNI they keep all 8 ([-127, 127]). ARM's dot-product kernels want S8S8.
``Int8Kernel`` says what ORT's integer MatMul then computes here, for passes that simulate it.
"""

from __future__ import annotations

import dataclasses
import platform
import typing
from typing import Literal

import numpy as np

from onnxcompress.cpu import read_cpu_flags
from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.support.ranges import U8_LEVELS

ElementType = Literal["uint8", "int8"]
TYPES = typing.get_args(ElementType)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
FULL_QMAX, REDUCED_QMAX = 127, 64  # ORT's symmetric int8 weight integers, and its 7-bit ones
INT16_MAX = 32767
PAIR_PRODUCTS_AT_ONCE = 1 << 22  # bounds the memory of simulating pair saturation


@dataclasses.dataclass(frozen=True)
class QuantTarget:
    """Activation and weight element types (``uint8``/``int8``) and whether to use 7-bit weights."""

    activation_type: str
    weight_type: str
    reduce_range: bool

    def ort_types(self) -> tuple:
        """The (activation, weight) pair as ``onnxruntime.quantization.QuantType`` members."""
        from onnxruntime.quantization import QuantType

        names = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        return names[self.activation_type], names[self.weight_type]

    @property
    def weight_qmax(self) -> int:
        """Largest magnitude of the integers ORT gives symmetric int8 weights: 64 with 7-bit weights, else 127."""
        return REDUCED_QMAX if self.reduce_range else FULL_QMAX

    def describe(self) -> str:
        """One line for the report, e.g. ``U8 activations / S8 weights``."""
        short = {"uint8": "U8", "int8": "S8"}
        reduced = ", 7-bit weights (no VNNI)" if self.reduce_range else ""
        return f"{short[self.activation_type]} activations / {short[self.weight_type]} weights{reduced}"


@dataclasses.dataclass(frozen=True)
class Int8Kernel:
    """ORT's U8S8 integer MatMul as a CPU runs it: S8 weights on [-weight_qmax, weight_qmax], and whether each pair
    of adjacent u8·s8 products is added in 16 bits with saturation (AVX2 without VNNI) before the int32 sum."""

    weight_qmax: int
    pairs_saturate: bool

    def saturation_loss(self, codes: np.ndarray, weight_codes: np.ndarray) -> np.ndarray:
        """How far the kernel's sums fall short of the exact ``codes @ weight_codes`` (U8 levels before the zero point
        is taken off, S8 integers): each pair of products over k = 2i, 2i+1 is clipped to int16; zero when none can reach it."""
        shape = (*codes.shape[:-1], weight_codes.shape[-1])
        if not self.pairs_saturate or 2 * U8_LEVELS * int(np.abs(weight_codes).max(initial=0)) <= INT16_MAX:
            return np.zeros(shape, np.int64)
        rows, weights = codes.reshape(-1, codes.shape[-1]).astype(np.int32), weight_codes.astype(np.int32)
        if rows.shape[1] % 2:  # the kernel pads K with a zero
            rows, weights = np.pad(rows, ((0, 0), (0, 1))), np.pad(weights, ((0, 1), (0, 0)))
        loss = np.empty((len(rows), weights.shape[1]), np.int64)
        step = max(1, PAIR_PRODUCTS_AT_ONCE // weights.size)
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            pairs = chunk[:, 0::2, None] * weights[0::2] + chunk[:, 1::2, None] * weights[1::2]
            loss[start:start + step] = (pairs - np.clip(pairs, -INT16_MAX - 1, INT16_MAX)).sum(axis=1)
        return loss.reshape(shape)


def cpu_default(machine: str | None = None, cpu_flags: set[str] | None = None) -> QuantTarget:
    """The fastest accurate choice for this CPU: S8S8 on ARM, U8S8 on x86 (7-bit weights without VNNI)."""
    if _is_arm(machine):
        return QuantTarget("int8", "int8", reduce_range=False)
    flags = read_cpu_flags() if cpu_flags is None else cpu_flags
    return QuantTarget("uint8", "int8", reduce_range=not _has_vnni(flags))


def pairs_saturate(machine: str | None = None, cpu_flags: set[str] | None = None) -> bool:
    """True on x86 with AVX2 and no VNNI, where ORT's U8S8 kernels add pairs of products in 16 bits with saturation."""
    flags = read_cpu_flags() if cpu_flags is None else cpu_flags
    return not _is_arm(machine) and "avx2" in flags and not _has_vnni(flags)


def cpu_kernel(target: QuantTarget | None = None, machine: str | None = None, cpu_flags: set[str] | None = None) -> Int8Kernel:
    """How ORT's integer MatMul runs ``target`` (by default the CPU's own, as ``quantize-dynamic`` picks it) on this
    CPU, or on the one ``machine`` and ``cpu_flags`` describe."""
    flags = read_cpu_flags() if cpu_flags is None else cpu_flags
    target = target or cpu_default(machine, flags)
    return Int8Kernel(target.weight_qmax, pairs_saturate(machine, flags))


def _is_arm(machine: str | None) -> bool:
    return (machine or platform.machine()).lower().startswith(("arm", "aarch64"))


def _has_vnni(flags: set[str]) -> bool:
    return any(flag in flags for flag in VNNI_FLAGS)


def resolve_target(activation_type: str | None, weight_type: str | None, reduce_range: bool | None) -> QuantTarget:
    """The CPU default with any explicitly given option overriding it; unknown type names are refused."""
    default = cpu_default()
    for option, value in (("activation_type", activation_type), ("weight_type", weight_type)):
        if value is not None and value not in TYPES:
            raise UsageError(f"{option} must be one of {', '.join(TYPES)}, got {value!r}")
    return QuantTarget(
        activation_type or default.activation_type,
        weight_type or default.weight_type,
        default.reduce_range if reduce_range is None else reduce_range,
    )
