"""The integer types and range reduction to quantize to, chosen from this CPU's instruction set.

ORT's x86 integer kernels are fastest with U8 activations and S8 weights (U8S8). Without VNNI
(``avx512_vnni`` / ``avx_vnni``) the 16-bit intermediate of ``vpmaddubsw`` can saturate, so weights
are reduced to 7 bits there; with VNNI they keep all 8. ARM's dot-product kernels want S8S8.
"""

from __future__ import annotations

import dataclasses
import platform
import typing
from pathlib import Path
from typing import Literal

from onnxcompress.errors import UsageError

ElementType = Literal["uint8", "int8"]
TYPES = typing.get_args(ElementType)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
CPUINFO = Path("/proc/cpuinfo")


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

    def describe(self) -> str:
        """One line for the report, e.g. ``U8 activations / S8 weights``."""
        short = {"uint8": "U8", "int8": "S8"}
        reduced = ", 7-bit weights (no VNNI)" if self.reduce_range else ""
        return f"{short[self.activation_type]} activations / {short[self.weight_type]} weights{reduced}"


def cpu_default(machine: str | None = None, cpu_flags: set[str] | None = None) -> QuantTarget:
    """The fastest accurate choice for this CPU: S8S8 on ARM, U8S8 on x86 (7-bit weights without VNNI)."""
    machine = (machine or platform.machine()).lower()
    if machine.startswith(("arm", "aarch64")):
        return QuantTarget("int8", "int8", reduce_range=False)
    flags = read_cpu_flags() if cpu_flags is None else cpu_flags
    return QuantTarget("uint8", "int8", reduce_range=not any(f in flags for f in VNNI_FLAGS))


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


def read_cpu_flags(path: Path = CPUINFO) -> set[str]:
    """The feature flags of the first CPU listed in ``/proc/cpuinfo`` (empty where unreadable)."""
    try:
        text = path.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()
