"""The README's Python example runs as written, on a small CNN and calibration data, and CI runs
the README's set-up commands: the test command exactly, the install's extras in a fresh venv."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx

import onnxcompress as oc
from onnxcompress import bench

MEASURE = bench.measure

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CNN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,3,8,8] x) => (float[N,4] y) {
  a = Conv<pads = [1,1,1,1]>(x, w1, b1)
  r = Relu(a)
  c = Conv<pads = [1,1,1,1]>(r, w2, b2)
  s = Relu(c)
  p = GlobalAveragePool(s)
  f = Flatten(p)
  y = Gemm<transB = 1>(f, w3, b3)
}
"""
SHAPES = {"w1": (16, 3, 3, 3), "b1": (16,), "w2": (16, 16, 3, 3), "b2": (16,), "w3": (4, 16), "b3": (4,)}


def _setup_commands() -> list[str]:
    """The first bash block: the install-and-demo command, then the test command."""
    return re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1).strip().splitlines()


def _python_example() -> str:
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


def _write_cnn(path: Path) -> None:
    proto = onnx.parser.parse_model(CNN)
    rng = np.random.default_rng(0)
    proto.graph.initializer.extend(
        onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)
        for name, shape in SHAPES.items()
    )
    path.write_bytes(proto.SerializeToString())


def _quick_measure(*args, **kwargs):
    """One short round per model: this test checks the example runs, not how fast."""
    return MEASURE(*args, **{**kwargs, "rounds": 1, "round_seconds": 0.01, "max_extra_rounds": 0})


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "measure", _quick_measure)
    _write_cnn(tmp_path / "model.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).random((24, 3, 8, 8), dtype=np.float32))
    exec(compile(_python_example(), str(README), "exec"), {})
    small = oc.load(tmp_path / "small.onnx")
    ops = {node.op_type for node in small.graph}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    printed = capsys.readouterr().out
    for step in ("input", "fold-constants", "cleanup", "fuse", "prune-channels", "quantize-static"):
        assert step in printed


def test_ci_runs_the_readme_set_up_commands():
    install_demo, tests = _setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "the README's test command must be in .ci/run exactly"
    assert ci.index("bash .ci/fresh_install_smoke.sh") < ci.index(tests)
    install = install_demo.split("&&")[0].split()
    assert install[:2] == ["pip", "install"] and "-e" not in install  # a stranger's install, not editable
    extras = re.fullmatch(r'"\.\[([a-z,]+)\]"', install[2]).group(1)
    assert f'EXTRAS="{extras}"' in (ROOT / ".ci" / "fresh_install_smoke.sh").read_text()


def test_the_pass_table_lists_every_registered_pass_with_its_kind():
    """A new pass is documented where a stranger looks first (step 4 of docs/architecture.md's checklist)."""
    from onnxcompress.passes import REGISTRY

    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (exact|lossy) \|", README.read_text(), re.M))
    shipped = {name: cls for name, cls in REGISTRY.items() if cls.__module__.startswith("onnxcompress.passes.")}  # not the tests' own
    assert rows == {name: "exact" if cls.exact else "lossy" for name, cls in shipped.items()}


def test_the_own_model_path_runs_as_written(tmp_path):
    """The README's "your own model" commands, run in order by bash in an empty folder, each exiting 0."""
    import subprocess
    import sys

    block = re.search(r"## Your own model.*?```bash\n(.*?)```", README.read_text(), re.S).group(1)
    script = re.sub(r"\s+# [^\n]*", "", block)  # the comments telling a user what to put in
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "small.onnx").is_file() and (tmp_path / "report" / "report.json").is_file()
    assert "verification passed" in done.stdout
