"""Engines: the serial one runs tasks here and keeps their errors; Ray is imported only when asked for, and without
it more workers are one line naming the extra; a local Ray runtime of 2 workers, started and stopped here, gives
``compare`` the same models, byte for byte, and the same fidelity as the serial engine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from onnxcompress import compare, trial
from onnxcompress.engine import RayEngine, SerialEngine, make_engine
from onnxcompress.errors import UsageError
from onnxcompress.pipeline import Measurement


def test_the_serial_engine_runs_each_task_when_submitted_and_keeps_its_error():
    engine = SerialEngine()
    shared = {"a": 1}
    assert engine.share(shared) is shared
    assert engine.submit(divmod, 7, 2).result() == (3, 1)
    assert isinstance(engine.submit(divmod, 1, 0).exception(), ZeroDivisionError)


def test_without_ray_more_workers_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now fails as if it were not installed
    assert isinstance(make_engine(1), SerialEngine)
    with pytest.raises(UsageError, match=r"^--workers 2 runs tasks on Ray, which is not installed: pip install 'onnxcompress\[scale\]'$"):
        make_engine(2)
    with pytest.raises(UsageError, match=r"^--ray-address runs tasks on Ray"):
        make_engine(1, "ray://head:10001")


def test_nothing_imports_ray_unless_asked():
    code = ("import sys\nimport onnxcompress.cli.commands, onnxcompress.compare\n"
            "from onnxcompress.engine import make_engine\nmake_engine(1).submit(len, 'ab').result()\nprint('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_local_ray_runtime_gives_the_serial_engines_models(cnn_model):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'onnxcompress[scale]')")
    calibration = {"x": np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)}
    recipes = ["prune-channels:ratio=0.25,accept_loss=true", "prune-channels:ratio=0.5,accept_loss=true;quantize-static", "quantize-static"]
    run = dict(calibration=calibration, measurement=Measurement(rounds=1))
    serial = compare.compare_recipes(cnn_model, recipes, **run)
    with RayEngine(2):
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
        on_ray = compare.compare_recipes(cnn_model, recipes, workers=2, **run)
    assert not ray.is_initialized()  # stopped with the engine that started it
    assert [(o.name, o.size_bytes, o.quality) for o in on_ray] == [(o.name, o.size_bytes, o.quality) for o in serial]
    assert [trial.to_bytes(o.model) for o in on_ray] == [trial.to_bytes(o.model) for o in serial]
