"""The package front is lazy: ``import onnxcompress``, ``onnxcompress --help`` and ``--version`` load neither
ONNX Runtime, onnxscript, torch nor matplotlib, and every public name still imports from the package."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import onnxcompress

HEAVY = ("onnxruntime", "onnxscript", "torch", "matplotlib")


def _loaded_after(code: str) -> tuple[list[str], str]:
    """The heavy modules a fresh interpreter has loaded once ``code`` ran (even when it ended in ``SystemExit``), and its stdout."""
    probe = f"""
import json, sys
try:
{chr(10).join("    " + line for line in code.splitlines())}
except SystemExit:
    pass
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *output, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(output)


def test_import_loads_no_heavy_module():
    loaded, _ = _loaded_after("import onnxcompress")
    assert loaded == []


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_cli_help_and_version_load_no_heavy_module(flag):
    loaded, output = _loaded_after(f"from onnxcompress.cli import console_script\nsys.argv = ['onnxcompress', {flag!r}]\nconsole_script()")
    assert loaded == []
    assert ("Commands" in output and "verify" in output) if flag == "--help" else output.startswith("onnxcompress ")


def test_a_used_name_loads_what_it_needs():
    loaded, _ = _loaded_after("from onnxcompress import Pipeline")
    assert "onnxruntime" in loaded


def test_every_public_name_is_importable_from_the_package():
    names = {name: getattr(onnxcompress, name) for name in onnxcompress.__all__}
    assert all(value is not None for value in names.values())
    assert set(onnxcompress.__all__) <= set(dir(onnxcompress))
    from onnxcompress import Pipeline, pipeline

    assert Pipeline is pipeline.Pipeline


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Pipelin'"):
        onnxcompress.Pipelin  # noqa: B018
