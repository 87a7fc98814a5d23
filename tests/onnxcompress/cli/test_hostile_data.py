"""Every data option refuses a FIFO, a device and a zip bomb with one line and exit 2: nothing blocks,
nothing is read without end, nothing is inflated (``onnxcompress.io.check_data_path`` and
``array_headers`` behind every one of them)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from onnxcompress.cli import main

OPTIONS = {  # name: (file suffix, message prefix, argv for MODEL, DATA, WORK folder)
    "run --calibration": (".npz", "calibration data ", lambda m, d, w: ["run", m, "-o", w / "o.onnx", "-p", "cleanup", "--no-bench", "--calibration", d]),
    "run --recipe": (".toml", "recipe ", lambda m, d, w: ["run", m, "-o", w / "o.onnx", "--no-bench", "--recipe", d]),
    "run --inputs": (".npz", "", lambda m, d, w: ["run", m, "-o", w / "o.onnx", "-p", "cleanup", "--no-bench", "--inputs", d]),
    "compare -r": (".toml", "recipe ", lambda m, d, w: ["compare", m, "-r", d, "--rounds", "1"]),
    "compare --calibration": (".npz", "calibration data ", lambda m, d, w: ["compare", m, "-r", "cleanup", "--rounds", "1", "--calibration", d]),
    "compare --inputs": (".npz", "", lambda m, d, w: ["compare", m, "-r", "cleanup", "--rounds", "1", "--inputs", d]),
    "verify --golden": (".npz", "", lambda m, d, w: ["verify", m, "--golden", d]),
    "verify --inputs": (".npz", "", lambda m, d, w: ["verify", m, m, "--inputs", d]),
    "verify --ranges": (".json", "", lambda m, d, w: ["verify", m, m, "--ranges", d]),
    "verify --bisect": (".toml", "recipe ", lambda m, d, w: ["verify", m, "--bisect", d]),
    "recommend --calibration": (".npz", "calibration data ", lambda m, d, w: ["recommend", m, "--apply", "-o", w / "o.onnx", "--calibration", d]),
}
NPZ_OPTIONS = sorted(name for name, (suffix, _, _) in OPTIONS.items() if suffix == ".npz")


def run_cli(argv: list, capsys) -> tuple[int, str]:
    """Exit code and stderr of the CLI run in-process."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@contextlib.contextmanager
def fifo_watch(path: Path):
    """Yield a list that records every time something opened the FIFO at ``path`` for reading.

    A writer is opened whenever a reader waits, so a reader that should never have opened the FIFO
    sees end of file instead of blocking the test run forever.
    """
    opened: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            with contextlib.suppress(OSError):  # ENXIO while no reader has it open
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                opened.append(True)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("kind", ["FIFO", "device"])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_a_data_path_that_is_not_a_regular_file_is_refused_without_opening_it(option, kind, mlp_path, tmp_path, capsys):
    suffix, prefix, argv = OPTIONS[option]
    data = tmp_path / f"data{suffix}"
    if kind == "FIFO":
        os.mkfifo(data)
        what = "FIFO"
    else:
        data.symlink_to("/dev/zero")  # were the check skipped, text reads stop at io.TEXT_LIMIT and zip reads at once
        what = "character device"
    with fifo_watch(data) if kind == "FIFO" else contextlib.nullcontext([]) as opened:
        code, err = run_cli(argv(mlp_path, data, tmp_path), capsys)
    assert (code, err) == (2, f"error: {prefix}{data}: is a {what}, not a regular file\n")
    assert opened == []
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("option", NPZ_OPTIONS)
def test_a_zip_bomb_is_refused_before_it_is_inflated(option, mlp_path, tmp_path, npz_bomb, capsys):
    _, _, argv = OPTIONS[option]
    names = ["input:x", "output:y"] if option == "verify --golden" else ["x"]
    data = npz_bomb(tmp_path / "bomb.npz", names)
    start = time.perf_counter()
    code, err = run_cli(argv(mlp_path, data, tmp_path), capsys)
    assert time.perf_counter() - start < 30  # the whole command, model loading included, on a busy machine
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {data}: array '{names[0]}' takes the declared total to 137.4 GB, more than the ")
    assert not (tmp_path / "o.onnx").exists()



@pytest.mark.parametrize("kind", ["FIFO", "npy bomb"])
def test_an_image_folder_holding_a_fifo_or_a_bomb_is_refused(kind, cnn_path, tmp_path, npy_bomb, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((8, 8, 3), np.float32))
    if kind == "FIFO":
        bad = folder / "b.png"
        os.mkfifo(bad)
        message = f"{bad}: is a FIFO, not a regular file"
    else:
        bad = folder / "b.npy"
        bad.write_bytes(npy_bomb)
        message = f"{bad}: the array declares 137.4 GB of data but the file holds 1.0 MB"
    argv = ["run", cnn_path, "-o", tmp_path / "o.onnx", "-p", "cleanup", "--no-bench", "--calibration", folder]
    with fifo_watch(bad) if kind == "FIFO" else contextlib.nullcontext([]) as opened:
        assert run_cli(argv, capsys) == (2, f"error: {message}\n")
    assert opened == [] and not (tmp_path / "o.onnx").exists()
