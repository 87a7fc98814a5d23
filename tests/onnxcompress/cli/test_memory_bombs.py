"""Every command on each 8-10 GB memory bomb, under an address space only 3 GB above the test's own:
nothing builds the bomb on our side (fold-constants estimates before it evaluates), so the answer is
the model's own: ONNX Runtime cannot run it here (one line, exit 2), or it runs (a Loop that never
iterates); the input is untouched and no output is written for a model that cannot run."""

from __future__ import annotations

import hashlib

import pytest
from memory_bombs import BOMBS

from onnxcompress import io
from onnxcompress.cli import main

COMMANDS = {
    "inspect": lambda model, out: ["inspect", model],
    "run": lambda model, out: ["run", model, "-o", out, "-p", "fold-constants", "-p", "cleanup", "-p", "fuse", "--no-bench"],
    "bench": lambda model, out: ["bench", model, "--rounds", "1"],
    "verify": lambda model, out: ["verify", model, model],
    "compare": lambda model, out: ["compare", model, "-r", "fold-constants;cleanup", "--rounds", "1"],
    "recommend": lambda model, out: ["recommend", model],
    "search": lambda model, out: ["search", model, "-r", "fold-constants;cleanup", "--min-cosine", "0.9", "-o", out, "--rounds", "1"],
}
NO_ROOM = "not enough memory to run the model: ONNX Runtime could not allocate a {gb} GB buffer on this machine"
ANSWERS = {  # bomb: the one line of the commands that run the model; None: it runs
    "expand": NO_ROOM.format(gb="8.0"),
    "range": NO_ROOM.format(gb="8.0"),
    "broadcast": NO_ROOM.format(gb="10.0"),
    "dead": NO_ROOM.format(gb="8.0"),  # ORT runs a dead node too: the model itself needs the 8 GB
    "tile": "the model cannot run: one of its tensors would pass ONNX Runtime's 4.3 GB limit",
    "loop": None,
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("bomb", sorted(ANSWERS))
def test_every_command_answers_a_memory_bomb_without_building_it(bomb, command, tmp_path, capsys, capped_address_space):
    model = tmp_path / "bomb.onnx"
    io.save(BOMBS[bomb](), model)
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    code = main([str(a) for a in COMMANDS[command](model, tmp_path / "out.onnx")])
    out, err = capsys.readouterr()
    answer = ANSWERS[bomb]
    if answer is None or command in ("inspect", "recommend"):  # recommend skips what cannot run and says so
        assert code == 0, err
        assert command != "recommend" or answer is None or answer in out
    else:
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {answer}"), err
        assert not (tmp_path / "out.onnx").exists()
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
