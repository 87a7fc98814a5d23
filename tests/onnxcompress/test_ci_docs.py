"""docs/ci.md stays true: every onnxcompress command it shows runs, in order, and exits 0."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np

from onnxcompress import io
from onnxcompress.cli import main

CI_DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
COMMAND = re.compile(r"^\s*(?:- run:|entry:)?\s*(onnxcompress\s.+)$")


def documented_commands() -> list[list[str]]:
    """The onnxcompress command lines inside the page's code blocks, in order."""
    commands, in_block = [], False
    for line in CI_DOC.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        match = COMMAND.match(line) if in_block else None
        if match:
            commands.append(shlex.split(match.group(1))[1:])
    return commands


def test_the_page_shows_every_workflow():
    verbs = {(argv[0], next((a for a in argv if a.startswith("--golden") or a.startswith("--save-golden") or a == "--bisect"), "")) for argv in documented_commands()}
    assert {("run", ""), ("verify", "--save-golden"), ("verify", "--golden"), ("verify", "--bisect"), ("verify", "")} <= verbs


def test_documented_commands_run(tmp_path, cnn_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    io.save(cnn_model, tmp_path / "model.onnx")
    (tmp_path / "tests").mkdir()
    (tmp_path / "recipe.toml").write_text('[[pass]]\nname = "fold-constants"\n\n[[pass]]\nname = "cleanup"\n')
    (tmp_path / "int8.toml").write_text('[[pass]]\nname = "fold-constants"\n\n[[pass]]\nname = "quantize-static"\n')
    rng = np.random.default_rng(0)
    for name, samples in (("calibration.npz", 32), ("samples.npz", 16)):
        io.save_arrays(tmp_path / name, {"x": rng.standard_normal((samples, 3, 8, 8)).astype(np.float32)})
    for argv in documented_commands():
        assert main(argv) == 0, f"documented command failed: onnxcompress {shlex.join(argv)}"
    for junit in ("verify-golden.xml", "verify-int8.xml"):
        assert (tmp_path / junit).read_text().count("<failure") == 0
