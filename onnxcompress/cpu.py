"""What this machine's CPU offers for INT8, read once from ``/proc/cpuinfo`` for every consumer.

``recommend`` asks whether INT8 pays here; the quantizers choose their integer types from the same
flags; benchmarks print the CPU's model name beside their figures.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclasses.dataclass
class CpuFeatures:
    """The CPU facts that decide whether INT8 pays: architecture and its int8 dot-product flags."""

    arch: str
    flags: frozenset[str]

    @property
    def int8_level(self) -> str:
        """"vnni" (int8 dot product), "avx2" (int8 via 16-bit madd), "arm-dot", or "none"."""
        if self.flags & {"avx512_vnni", "avx_vnni"}:
            return "vnni"
        if self.flags & {"asimddp", "i8mm"}:
            return "arm-dot"
        if "avx2" in self.flags:
            return "avx2"
        return "none"


def cpu_features(cpuinfo: str | Path = CPUINFO) -> CpuFeatures:
    """Architecture and flags of this machine (empty flags where ``cpuinfo`` is unreadable)."""
    return CpuFeatures(platform.machine() or "unknown", frozenset(read_cpu_flags(Path(cpuinfo))))


def read_cpu_flags(path: Path = CPUINFO) -> set[str]:
    """The feature flags of the first CPU listed (x86 ``flags`` or ARM ``Features``; empty where unreadable)."""
    value = _first_field(path, ("flags", "Features"))
    return set(value.split()) if value is not None else set()


def cpu_model_name(path: Path = CPUINFO) -> str:
    """The CPU's marketing name (``model name``), or the architecture where it is not listed."""
    return _first_field(path, ("model name",)) or platform.machine() or "unknown"


def _first_field(path: Path, keys: tuple[str, ...]) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None
