"""docs/ci.md stays true: every onnxcompress command it shows runs, in order, and exits 0."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

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
    for argv in documented_commands():
        assert main(argv) == 0, f"documented command failed: onnxcompress {shlex.join(argv)}"
    assert (tmp_path / "verify-golden.xml").read_text().count("<failure") == 0
