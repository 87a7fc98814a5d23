"""Engines: the serial one runs tasks here and keeps their errors; Ray is imported only when asked for, and without
it more workers are one line naming the extra; a local Ray runtime of 2 workers, started and stopped here, gives
``search`` and ``compare`` the same models, byte for byte, and the same fidelity as the serial engine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from onnxcompress import bench, compare, search
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
    code = ("import sys\nimport onnxcompress.cli.commands, onnxcompress.search, onnxcompress.compare\n"
            "from onnxcompress.engine import make_engine\nmake_engine(1).submit(len, 'ab').result()\nprint('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _size_timer(models: list[bytes]) -> list[bench.Latency]:
    """A latency that depends on the model's bytes only, so two runs' fronts can be compared exactly."""
    return [bench.Latency(*[len(m) / 1e4] * 3, 1, 1, 0, 1, 1) for m in models]


def _judged(result: search.SearchResult) -> list[dict]:
    """Every candidate's record, its model and each step's size and fidelity; not the seconds and memory each step took."""
    kept = ("pass", "status", "size_bytes", "params", "fidelity", "accuracy")
    return [{k: v for k, v in c.to_dict().items() if k not in ("seconds", "steps")}
            | {"model": c.model, "steps": [{k: step[k] for k in kept} for step in c.to_dict()["steps"]]} for c in result.candidates]


def test_a_local_ray_runtime_gives_the_serial_engines_candidates(cnn_model):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'onnxcompress[scale]')")
    calibration = {"x": np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)}
    grid = ["prune-channels:ratio={0.25,0.5,0.75},accept_loss=true;{,quantize-static}", "quantize-static"]
    run = dict(calibration=calibration, measurement=Measurement(rounds=1), timer=_size_timer)
    serial = search.search(cnn_model, grid, search.Goal(min_cosine=0.85), **run)
    with RayEngine(2):
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
        on_ray = search.search(cnn_model, grid, search.Goal(min_cosine=0.85), workers=2, **run)
        outcomes = compare.compare_recipes(cnn_model, ["quantize-static"], calibration=calibration, measurement=Measurement(rounds=1), workers=2)
    assert not ray.is_initialized()  # stopped with the engine that started it
    assert _judged(on_ray) == _judged(serial)  # same statuses, reasons, sizes, per-output fidelity, models byte for byte
    assert [c.recipe for c in on_ray.pareto] == [c.recipe for c in serial.pareto] and on_ray.best.recipe == serial.best.recipe
    assert sum(c.status == "skipped" for c in on_ray.candidates) == 3
    int8 = next(c for c in serial.candidates if c.recipe == "quantize-static")
    assert (outcomes[1].size_bytes, outcomes[1].quality) == (int8.size_bytes, int8.cosine)
