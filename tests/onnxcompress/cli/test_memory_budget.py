"""Synthetic inputs past the memory budget are refused before a byte is drawn: one line, exit 2, for a
huge declared input, a huge ``--batch`` and a huge ``--input-shape``, in every command that draws them."""

from __future__ import annotations

import os

import onnx
import pytest
from onnx import TensorProto, helper

from onnxcompress.cli import main
from onnxcompress.defaults import MEMORY_BUDGET_ENV

COMMANDS = {
    "bench": lambda model, out, extra: ["bench", model, "--rounds", "1", *extra],
    "verify": lambda model, out, extra: ["verify", model, model, *extra],
    "run": lambda model, out, extra: ["run", model, "-o", out / "out.onnx", "-p", "cleanup", *extra],
}


def identity_model(path, dtype: int, shape: list) -> str:
    """``y = x`` for one input of ``dtype`` and ``shape``, saved to ``path``."""
    x = helper.make_tensor_value_info("x", dtype, shape)
    y = helper.make_tensor_value_info("y", dtype, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


CASES = {
    # name: (dtype, declared shape, extra options, the shape the error names)
    "declared": (TensorProto.DOUBLE, [1, 1_000_000_000], [], "[1,1000000000]"),
    "batch": (TensorProto.FLOAT, ["N", 10_000_000], ["--batch", "1024"], "[1024,10000000]"),  # --batch is at most 1024
    "input-shape": (TensorProto.FLOAT, ["N", 4], ["--input-shape", "x:100000,100000"], "[100000,100000]"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_synthetic_inputs_past_the_budget_are_one_line(command, case, tmp_path, capsys, capped_address_space):
    dtype, shape, extra, named = CASES[case]
    model = identity_model(tmp_path / "m.onnx", dtype, shape)
    code = main([str(a) for a in COMMANDS[command](model, tmp_path, extra)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: synthetic input 'x' of shape " + named), err
    assert "budget" in err and "--inputs FILE.npz" in err
    assert not (tmp_path / "out.onnx").exists()


def test_a_memory_error_is_one_line_not_a_bug_report(monkeypatch, capsys):
    import sys

    def exhausted(**_):
        raise MemoryError("Unable to allocate 37.3 GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr(sys.modules["onnxcompress.cli"], "app", exhausted)
    assert main(["bench", "m.onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: not enough memory: Unable to allocate 37.3 GiB") and err.count("\n") == 1, err
    assert "bug" not in err


@pytest.fixture
def budget_env():
    """No budget variable during the test, and the one found before it afterwards: ``--memory-budget`` sets it in
    this process, and a budget left behind would shrink every later test's."""
    found = os.environ.pop(MEMORY_BUDGET_ENV, None)
    yield
    os.environ.pop(MEMORY_BUDGET_ENV, None)
    if found is not None:
        os.environ[MEMORY_BUDGET_ENV] = found


def test_memory_budget_option_lowers_the_budget(tmp_path, capsys, budget_env):
    model = identity_model(tmp_path / "m.onnx", TensorProto.FLOAT, [1, 1_000_000])  # 4 MB: within the default
    assert main(["verify", model, model]) == 0
    capsys.readouterr()
    assert main(["--memory-budget", "1MB", "verify", model, model]) == 2
    err = capsys.readouterr().err
    assert err == ("error: synthetic input 'x' of shape [1,1000000] takes the inputs to 4.0 MB, more than the 1.0 MB "
                   "budget (set by --memory-budget or ONNXCOMPRESS_MEMORY_BUDGET): pass a smaller --batch or "
                   "--input-shape x:d0,d1,..., or real inputs with --inputs FILE.npz\n")


@pytest.mark.parametrize("size", ["lots", "0", "-1GB", "8 parsecs"])
def test_a_memory_budget_that_is_not_a_size_is_one_line(size, tmp_path, capsys, budget_env):
    model = identity_model(tmp_path / "m.onnx", TensorProto.FLOAT, [1, 4])
    assert main(["--memory-budget", size, "inspect", model]) == 2
    assert capsys.readouterr().err == (f"error: --memory-budget {size!r} is not a size: expected a positive number "
                                       "of bytes or e.g. 512MB, 8GB\n")
