"""Exit codes and messages of the CLI against the installed typer: usage errors as typer reports them
(exit 2), ``-h`` and ``--version``, and a defect inside a pass reported as a bug (exit 70)."""

from __future__ import annotations

from importlib import metadata

import pytest

from onnxcompress import passes
from onnxcompress.cli import DEBUG_ENV, EXIT_BUG, app, main
from onnxcompress.cli.app import MAX_BATCH, MAX_THREADS

# each command that takes --threads/--batch, with arguments that parse (the model is never read)
WITH_THREADS = {
    "bench": ["bench", "m.onnx"],
    "compare": ["compare", "m.onnx", "-r", "cleanup"],
    "run": ["run", "m.onnx", "-o", "o.onnx"],
    "search": ["search", "m.onnx", "-r", "cleanup", "-o", "o.onnx"],
    "verify": ["verify", "m.onnx"],
}


def _usage_error(capsys, argv: list[str]) -> str:
    """Run ``argv``, check it is a usage error as typer reports one, and return stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    command = " ".join(["onnxcompress", *argv[:1]]) if argv[0] in {i.name for i in app.registered_commands} else "onnxcompress"
    assert err.startswith(f"Usage: {command} ")
    assert f"Try '{command} -h' for help." in err
    assert "NoSuchOption" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_on_the_app_and_every_command(flag, capsys):
    for argv in [[flag], *([info.name, flag] for info in app.registered_commands)]:
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        assert "Usage: onnxcompress" in out and "-h" in out, argv


def test_version_is_the_installed_distribution(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"onnxcompress {metadata.version('onnxcompress')}\n"


def test_unknown_option_is_named(capsys):
    err = _usage_error(capsys, ["inspect", "m.onnx", "--no-such-option"])
    assert "No such option: --no-such-option" in err


def test_unknown_command_is_named(capsys):
    assert "No such command 'squash'" in _usage_error(capsys, ["squash"])


def test_missing_argument_is_named(capsys):
    assert "Missing argument 'model'" in _usage_error(capsys, ["inspect"])


@pytest.mark.parametrize("command", sorted(WITH_THREADS))
@pytest.mark.parametrize(("option", "value"), [("--threads", 0), ("--threads", 100000), ("--threads", MAX_THREADS + 1),
                                               ("--batch", 0), ("--batch", MAX_BATCH + 1)])
def test_out_of_range_threads_and_batch_name_the_option(command, option, value, capsys):
    err = _usage_error(capsys, [*WITH_THREADS[command], option, str(value)])
    assert f"Invalid value for '{option}'" in err


@pytest.fixture
def broken_cleanup(monkeypatch):
    """``cleanup`` crashes with the exception given to ``break_with`` (a defect, not a bad input)."""

    def break_with(exc: BaseException) -> None:
        def call(self, model):
            raise exc

        monkeypatch.setattr(passes.Cleanup, "call", call)

    return break_with


@pytest.mark.internal_error
@pytest.mark.parametrize("exc", [ValueError("bad axis -7\nsecond line"), IndexError("list index out of range"),
                                 RecursionError("maximum recursion depth exceeded")])
def test_defect_in_a_pass_is_a_bug_with_its_own_exit_code(exc, broken_cleanup, mlp_path, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    broken_cleanup(exc)
    out = tmp_path / "out.onnx"
    assert main(["run", str(mlp_path), "-o", str(out), "-p", "cleanup", "--no-bench"]) == EXIT_BUG
    err = capsys.readouterr().err.strip()
    first_line = str(exc).splitlines()[0]
    assert err == f"error: bug in onnxcompress: {type(exc).__name__}: {first_line} (set {DEBUG_ENV}=1 for the traceback; please report it)"
    assert not out.exists()


@pytest.mark.internal_error
def test_debug_variable_adds_the_traceback_and_keeps_the_exit_code(broken_cleanup, mlp_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DEBUG_ENV, "1")
    broken_cleanup(IndexError("list index out of range"))
    assert main(["run", str(mlp_path), "-o", str(tmp_path / "out.onnx"), "-p", "cleanup", "--no-bench"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in call" in err
    assert err.strip().splitlines()[-1].startswith("error: bug in onnxcompress: IndexError: list index out of range (traceback above")


def test_interrupt_exits_130(broken_cleanup, mlp_path, tmp_path):
    broken_cleanup(KeyboardInterrupt())
    assert main(["run", str(mlp_path), "-o", str(tmp_path / "out.onnx"), "-p", "cleanup", "--no-bench"]) == 130
