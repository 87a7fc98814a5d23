"""``recover`` on torch.distributed: two processes started by ``torchrun`` (gloo on CPU) share every batch
and end with the weights one process reaches on the same data order."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from onnxcompress import io  # noqa: E402
from onnxcompress.calibration import ArrayReader  # noqa: E402
from onnxcompress.passes.pruning import PruneChannels  # noqa: E402

from ...passes.pruning.conftest import text_model  # noqa: E402
from ...passes.pruning.test_taylor import CNN, SHAPES  # noqa: E402

RECOVER = "recover:teacher={teacher},epochs=3,lr=3e-3,batch_size=16,accept_loss=true"


def _run(argv: list[str], cwd) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_processes_train_the_weights_one_process_does(tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    teacher = text_model(CNN, SHAPES)
    io.save(teacher, tmp_path / "teacher.onnx")
    student = io.clone(teacher)
    data = {"x": np.random.default_rng(0).standard_normal((96, 3, 8, 8)).astype(np.float32)}
    PruneChannels(ratio=0.5, accept_loss=True).apply(student, calibration=ArrayReader(data))
    io.save(student, tmp_path / "student.onnx")
    np.savez(tmp_path / "data.npz", **data)
    chain = ["-p", RECOVER.format(teacher=tmp_path / "teacher.onnx"), "--calibration", "data.npz", "--no-bench"]
    cli = [sys.executable, "-c", "from onnxcompress.cli import console_script; console_script()", "run", "student.onnx"]
    _run([*cli, "-o", "single.onnx", *chain], tmp_path)
    two = _run([torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", *cli, "-o", "two.onnx", *chain], tmp_path)
    assert "data-parallel on torch.distributed: 2 processes share every batch" in two.stdout.replace("\n", " ")
    single, split, before = (io.load(tmp_path / name).graph.initializers for name in ("single.onnx", "two.onnx", "student.onnx"))
    for name, value in single.items():
        trained = value.const_value.numpy()
        np.testing.assert_allclose(split[name].const_value.numpy(), trained, rtol=1e-4, atol=1e-5, err_msg=name)
    assert any(not np.array_equal(single[n].const_value.numpy(), before[n].const_value.numpy()) for n in single)  # it trained
