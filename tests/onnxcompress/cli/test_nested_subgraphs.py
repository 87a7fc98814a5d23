"""If nested as deep as protobuf lets ONNX and ONNX Runtime read (31 levels) goes through every command;
deeper (50, 500) is one line and exit 2 from every command and from ``io.load``, the file untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest

from onnxcompress import io
from onnxcompress.cli import main
from onnxcompress.errors import UsageError

DEEPEST_READABLE = 31
COMMANDS = {
    "inspect": lambda model, out: ["inspect", model],
    "run": lambda model, out: ["run", model, "-o", out / "out.onnx", "-p", "fold-constants", "-p", "cleanup",
                               "-p", "fuse", "--no-bench"],
    "bench": lambda model, out: ["bench", model, "--rounds", "1"],
    "verify": lambda model, out: ["verify", model, model],
    "compare": lambda model, out: ["compare", model, "-r", "cleanup", "--rounds", "1"],
    "recommend": lambda model, out: ["recommend", model],
    "search": lambda model, out: ["search", model, "-r", "fold-constants;cleanup;fuse", "--min-cosine", "0.9", "-o", out / "out.onnx",
                                  "--rounds", "1"],
}


def test_the_builder_makes_what_ort_runs(nested_if_model, tmp_path):
    session = ort.InferenceSession(nested_if_model(tmp_path / "m.onnx", DEEPEST_READABLE))
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    assert np.array_equal(session.run(None, {"x": x, "c": np.array(True)})[0], x)
    assert np.array_equal(session.run(None, {"x": x, "c": np.array(False)})[0], -x)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_deepest_readable_nesting_goes_through_every_command(nested_if_model, command, tmp_path, capsys):
    model = nested_if_model(tmp_path / "m.onnx", DEEPEST_READABLE)
    before = hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()
    code = main([str(a) for a in COMMANDS[command](model, tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest() == before
    if command in ("run", "search"):
        assert len(io.load(tmp_path / "out.onnx").graph) == 1


@pytest.mark.parametrize("depth", [DEEPEST_READABLE + 1, 50, 500])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_deeper_nesting_is_one_line_from_every_command(nested_if_model, command, depth, tmp_path, capsys):
    model = nested_if_model(tmp_path / "m.onnx", depth)
    code = main([str(a) for a in COMMANDS[command](model, tmp_path)])
    assert (code, capsys.readouterr().err) == (2, f"error: {model}: {io.NESTED_TOO_DEEP}\n")
    assert not (tmp_path / "out.onnx").exists()


def test_deeper_nesting_is_a_usage_error_from_the_api(nested_if_model, tmp_path):
    with pytest.raises(UsageError, match="nested deeper"):
        io.load(nested_if_model(tmp_path / "m.onnx", 500))
