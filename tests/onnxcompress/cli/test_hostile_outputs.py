"""Every command that writes a file refuses an output path that would overwrite its input or write
through something planted there (a link, a device, a FIFO): exit 2, one line, nothing changed anywhere.

``inspect --json`` prints to stdout and writes no file; every other output goes through
``onnxcompress.io.write_files``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxcompress import io
from onnxcompress.cli import main

REPORT_FILE = "report.md"
WRITERS = {
    "run -o": lambda m, out, work: ["run", m, "-o", out, "-p", "cleanup", "--no-bench"],
    "run --report": lambda m, out, work: ["run", m, "-o", work / "result.onnx", "-p", "cleanup", "--no-bench", "--report", out.parent],
    "bench --json": lambda m, out, work: ["bench", m, "--rounds", "1", "--json", out],
    "compare --json": lambda m, out, work: ["compare", m, "-r", "cleanup", "--rounds", "1", "--json", out],
    "compare --plot": lambda m, out, work: ["compare", m, "-r", "cleanup", "--rounds", "1", "--plot", out],
    "verify --save-golden": lambda m, out, work: ["verify", m, "--save-golden", out],
    "verify --json": lambda m, out, work: ["verify", m, m, "--json", out],
    "verify --junit": lambda m, out, work: ["verify", m, m, "--junit", out],
    "recommend --apply -o": lambda m, out, work: ["recommend", m, "--apply", "-o", out, "--calibration", work / "calibration.npz"],
}
TARGETS = ["symlink to the input", "hard link to the input", "external data of the input", "device", "FIFO", "symlink outside"]


def snapshot(*folders: Path) -> dict[str, tuple[int, str]]:
    """Every entry under ``folders``: its file type and, for regular files, the SHA-256 of its contents."""
    entries = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            mode = os.lstat(path).st_mode
            content = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else ""
            entries[str(path)] = (stat.S_IFMT(mode), content)
    return entries


def plant_device(path: Path) -> None:
    """A character device at ``path`` (as /dev/null: major 1, minor 3); without root, a symlink to /dev/null."""
    if os.geteuid() == 0:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        path.symlink_to("/dev/null")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("command", sorted(WRITERS))
def test_outputs_that_would_overwrite_or_write_through_are_refused(command, target, tmp_path, mlp_model, capsys):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("must not change")
    name = REPORT_FILE if command == "run --report" else "out.bin"
    out = work / name
    model = work / "model.onnx"
    location = name if target == "external data of the input" else "weights.bin"
    onnx.save(io.to_proto(mlp_model), model, save_as_external_data=True, location=location, size_threshold=0)
    np.savez(work / "calibration.npz", x=np.zeros((4, 16), np.float32))
    message = f"cannot write {out}: it is a symbolic link, not a regular file"
    if target == "symlink to the input":
        out.symlink_to(model)
        message = f"refusing to overwrite the input model {model.resolve()}; choose another output path"
    elif target == "hard link to the input":
        os.link(model, out)
        message = f"refusing to overwrite the input model {model.resolve()}; choose another output path"
    elif target == "external data of the input":
        message = f"refusing to overwrite the external data of the input model {out.resolve()}; choose another output path"
    elif target == "device" and command == "run --report":
        plant_device(out)
        message = f"cannot write {out}: it is a {'character device' if os.geteuid() == 0 else 'symbolic link'}, not a regular file"
    elif target == "device":
        out = Path("/dev/null")
        message = "cannot write /dev/null: it is a character device, not a regular file"
    elif target == "FIFO":
        os.mkfifo(out)
        message = f"cannot write {out}: it is a FIFO, not a regular file"
    else:
        out.symlink_to(outside / "victim.txt")
    before = snapshot(tmp_path)
    code = main([str(a) for a in WRITERS[command](model, out, work)])
    assert (code, capsys.readouterr().err) == (2, f"error: {message}\n")
    assert snapshot(tmp_path) == before
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and not list(Path("/dev").glob(".onnxcompress-*"))
