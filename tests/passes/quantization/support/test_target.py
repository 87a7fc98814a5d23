"""CPU-aware choice of quantized types, and the integer MatMul ORT runs with them."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.support import target as target_module
from onnxcompress.passes.quantization.support.target import Int8Kernel, QuantTarget, cpu_default, cpu_kernel, resolve_target


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


def test_explicit_options_override_and_bad_names_are_refused() -> None:
    target = resolve_target("int8", None, True)
    assert target.activation_type == "int8" and target.reduce_range
    assert "S8 activations" in target.describe()
    with pytest.raises(UsageError, match="activation_type"):
        resolve_target("int4", None, None)


@pytest.mark.parametrize(
    ("machine", "flags", "expected"),
    [
        ("x86_64", {"avx2", "avx512_vnni"}, Int8Kernel(127, pairs_saturate=False)),
        ("x86_64", {"avx2", "avx_vnni"}, Int8Kernel(127, pairs_saturate=False)),
        ("x86_64", {"avx2"}, Int8Kernel(64, pairs_saturate=True)),
        ("aarch64", {"asimddp"}, Int8Kernel(127, pairs_saturate=False)),
    ],
)
def test_cpu_kernel_follows_the_default_target_and_the_instruction_set(machine, flags, expected) -> None:
    assert cpu_kernel(machine=machine, cpu_flags=flags) == expected
    pinned = cpu_kernel(QuantTarget("uint8", "int8", reduce_range=False), machine=machine, cpu_flags=flags)
    assert pinned == Int8Kernel(127, expected.pairs_saturate)  # 8-bit weights where pairs saturate: what ORT runs then


def test_saturating_pairs_lose_what_exceeds_int16_and_seven_bit_weights_never_do() -> None:
    levels = np.array([[255, 255, 255, 0, 1]])
    weights = np.array([[127, -127], [127, -127], [127, 127], [5, 5], [3, 3]])  # odd K: the last pair is padded
    saturating = Int8Kernel(127, pairs_saturate=True)
    np.testing.assert_array_equal(saturating.saturation_loss(levels, weights), [[2 * 255 * 127 - 32767, -2 * 255 * 127 + 32768]])
    assert not Int8Kernel(127, pairs_saturate=False).saturation_loss(levels, weights).any()
    assert not saturating.saturation_loss(levels, np.clip(weights, -64, 64)).any()


def test_saturation_is_the_same_computed_in_chunks(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    levels, weights = rng.integers(0, 256, size=(2, 9, 7)), rng.integers(-127, 128, size=(7, 3))
    kernel = Int8Kernel(127, pairs_saturate=True)
    whole = kernel.saturation_loss(levels, weights)
    assert whole.shape == (2, 9, 3) and whole.any()
    monkeypatch.setattr(target_module, "PAIR_PRODUCTS_AT_ONCE", 1)
    np.testing.assert_array_equal(kernel.saturation_loss(levels, weights), whole)
