"""CPU-aware choice of quantized types."""

from __future__ import annotations

import pytest

from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.target import cpu_default, read_cpu_flags, resolve_target


@pytest.mark.parametrize(
    ("machine", "flags", "expected"),
    [
        ("x86_64", {"avx2", "avx512_vnni"}, ("uint8", "int8", False)),
        ("x86_64", {"avx2", "avx_vnni"}, ("uint8", "int8", False)),
        ("x86_64", {"avx2"}, ("uint8", "int8", True)),
        ("aarch64", set(), ("int8", "int8", False)),
    ],
)
def test_cpu_default(machine, flags, expected) -> None:
    target = cpu_default(machine, flags)
    assert (target.activation_type, target.weight_type, target.reduce_range) == expected


def test_cpuinfo_flags_are_read(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert read_cpu_flags(info) == {"fpu", "avx2", "avx512_vnni"}
    assert read_cpu_flags(tmp_path / "missing") == set()


def test_explicit_options_override_and_bad_names_are_refused() -> None:
    target = resolve_target("int8", None, True)
    assert target.activation_type == "int8" and target.reduce_range
    assert "S8 activations" in target.describe()
    with pytest.raises(UsageError, match="activation_type"):
        resolve_target("int4", None, None)
