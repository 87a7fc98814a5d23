"""Every command that reads a model gives the same one-line error and exit 2 for bad and hostile
files, never a traceback, never a change to its input; commands that write refuse to clobber it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from onnxcompress.cli import main

HOSTILE_CASES = [
    "missing", "folder", "empty", "text", "truncated", "tensor-proto", "no-graph", "opset-too-new",
    "escape-dotdot", "escape-sub", "absolute", "symlink-out", "missing-data", "truncated-data",
    "unknown-key", "bad-offset",
]
COMMANDS = {
    "inspect": lambda model, out: ["inspect", model],
    "inspect-json": lambda model, out: ["inspect", model, "--json"],
    "run": lambda model, out: ["run", model, "-o", out / "out.onnx", "-p", "cleanup", "--no-bench"],
    "bench": lambda model, out: ["bench", model, "--rounds", "1"],
    "verify-golden": lambda model, out: ["verify", model, "--save-golden", out / "g.npz"],
    "verify-pair": lambda model, out: ["verify", model, model],
    "compare": lambda model, out: ["compare", model, "-r", "cleanup"],
    "recommend": lambda model, out: ["recommend", model],
    "search": lambda model, out: ["search", model, "-r", "cleanup", "--min-cosine", "0.9", "-o", out / "best.onnx", "--json", out / "r.json"],
}


def run_cli(argv: list, capsys) -> tuple[int, str]:
    """Exit code and stderr of the CLI run in-process."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def digest(folder) -> dict[str, str]:
    """Hash of every regular file under ``folder``."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_every_command_rejects_hostile_models(command, case, hostile_models, tmp_path, capsys):
    path, message = hostile_models[case]
    out = tmp_path / "results"
    out.mkdir()
    before = digest(tmp_path)
    code, err = run_cli(COMMANDS[command](path, out), capsys)
    assert (code, err) == (2, f"error: {message}\n")
    assert digest(tmp_path) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "{m}", "-o", "{m}", "-p", "cleanup", "--no-bench"],
        ["run", "{m}", "-o", "{link}", "-p", "cleanup", "--no-bench"],
        ["run", "{m}", "-o", "{hard}", "-p", "cleanup", "--no-bench"],
        ["run", "{m}", "-o", "{dir}/sub/../model.onnx", "-p", "cleanup", "--no-bench"],
        ["verify", "{m}", "--save-golden", "{m}"],
        ["verify", "{m}", "{m}", "--json", "{link}"],
        ["verify", "{m}", "{m}", "--junit", "{hard}"],
    ],
)
def test_outputs_never_overwrite_the_input(argv, tmp_path, mlp_path, capsys):
    (tmp_path / "sub").mkdir()
    model = tmp_path / "model.onnx"
    shutil.copy(mlp_path, model)
    os.symlink(model, tmp_path / "link.onnx")
    os.link(model, tmp_path / "hard.onnx")
    before = digest(tmp_path)
    names = {"m": model, "link": tmp_path / "link.onnx", "hard": tmp_path / "hard.onnx", "dir": tmp_path}
    code, err = run_cli([a.format(**names) for a in argv], capsys)
    assert (code, err) == (2, f"error: refusing to overwrite the input model {model}; choose another output path\n")
    assert digest(tmp_path) == before


def test_output_into_a_missing_folder(tmp_path, mlp_path, capsys):
    out = tmp_path / "no" / "out.onnx"
    code, err = run_cli(["run", mlp_path, "-o", out, "-p", "cleanup", "--no-bench"], capsys)
    assert (code, err) == (2, f"error: cannot write {out}: folder {out.parent} does not exist\n")


def test_custom_domain_ops_run_only_where_ort_has_a_kernel(tmp_path, capsys):
    from onnx_ir import from_onnx_text

    from onnxcompress import io

    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) { y = com.example.Frobnicate(x) }
    """
    path = io.save(from_onnx_text(text), tmp_path / "custom.onnx")
    assert run_cli(["inspect", path], capsys)[0] == 0
    code, err = run_cli(["verify", path, "--save-golden", tmp_path / "g.npz"], capsys)
    assert code == 2 and err.startswith("error: ONNX Runtime cannot load the model: ") and err.count("\n") == 1
    runnable = io.save(from_onnx_text(text.replace("com.example", "com.microsoft").replace("Frobnicate", "Gelu")), tmp_path / "gelu.onnx")
    assert run_cli(["verify", runnable, runnable, "--rtol", "0", "--atol", "0"], capsys) == (0, "")
    out = tmp_path / "gelu.out.onnx"
    assert run_cli(["run", runnable, "-o", out, "-p", "fold-constants", "-p", "cleanup", "-p", "fuse", "--no-bench"], capsys)[0] == 0
    assert [(n.domain, n.op_type) for n in io.load(out).graph] == [("com.microsoft", "Gelu")]


@pytest.mark.parametrize("case", ["truncated", "escape-dotdot", "symlink-out", "opset-too-new"])
def test_console_script_prints_one_line_and_no_traceback(case, hostile_models):
    path, message = hostile_models[case]
    script = shutil.which("onnxcompress")
    assert script is not None
    done = subprocess.run([script, "inspect", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"error: {message}\n" and "Traceback" not in done.stdout + done.stderr


def test_model_over_the_protobuf_limit_goes_through_run_and_verify(tmp_path, mlp_path, monkeypatch, capsys):
    """The 2 GB limit is lowered so a small model takes the large-model path end to end."""
    from onnxcompress import io

    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD", 1000)
    big = io.save(io.load(mlp_path), tmp_path / "big.onnx")
    out = tmp_path / "out.onnx"
    assert run_cli(["run", big, "-o", out, "-p", "cleanup", "--no-bench"], capsys)[0] == 0
    assert io.external_data_path(out).is_file()
    code, err = run_cli(["verify", big, out, "--rtol", "0", "--atol", "0"], capsys)
    assert (code, err) == (0, "")
