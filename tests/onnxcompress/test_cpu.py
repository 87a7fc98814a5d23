"""Tests for onnxcompress.cpu: the CPU facts read from /proc/cpuinfo."""

from __future__ import annotations

from onnxcompress.cpu import cpu_features, cpu_model_name, read_cpu_flags


def test_cpuinfo_flags_are_read(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert read_cpu_flags(info) == {"fpu", "avx2", "avx512_vnni"}
    assert read_cpu_flags(tmp_path / "missing") == set()


def test_cpu_features_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu sse avx2 avx_vnni\n")
    assert cpu_features(cpuinfo).int8_level == "vnni"
    cpuinfo.write_text("processor : 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu_features(cpuinfo).int8_level == "arm-dot"
    assert cpu_features(tmp_path / "missing").int8_level == "none"


def test_cpu_model_name_falls_back_to_the_architecture(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.00GHz\nflags\t\t: fpu\n")
    assert cpu_model_name(cpuinfo) == "Example CPU @ 2.00GHz"
    assert cpu_model_name(tmp_path / "missing") == cpu_features(tmp_path / "missing").arch
