"""``onnxcompress passes`` lists every registered pass with its kind and options; ``passes NAME`` shows one option by option."""

from __future__ import annotations

import pytest

from onnxcompress.cli import main
from onnxcompress.cli.app import console
from onnxcompress.passes import REGISTRY


def test_lists_every_registered_pass_with_its_kind_and_options(capsys):
    assert main(["passes"]) == 0
    rows = {cells[0]: cells for cells in _table_rows(capsys.readouterr().out)}
    assert set(REGISTRY) <= set(rows)
    assert rows["test-scale"][1] == "lossy" and rows["test-scale"][3] == "factor"
    assert rows["cleanup"][1:4:2] == ["exact", "-"]
    for name in ("smooth", "scale-tokens", "split-outliers", "quantize-static", "quantize-dynamic", "prune-channels"):
        assert "calibration" not in rows[name][3] and "labelled" not in rows[name][3]


def test_the_listing_fits_an_80_column_terminal(capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 80)
    assert main(["passes"]) == 0
    assert max(map(len, capsys.readouterr().out.splitlines())) <= 80


def _table_rows(out: str) -> list[list[str]]:
    """The cells of a rich table's one-line rows (a wide console: no cell wraps)."""
    return [[cell.strip() for cell in line.strip("│┃").split("│")] for line in out.splitlines() if line.startswith("│")]


@pytest.fixture
def wide_console(monkeypatch):
    """A console wide enough that no help cell wraps."""
    monkeypatch.setattr(console, "width", 1000)


def test_a_named_pass_shows_each_option_with_type_default_allowed_values_and_help(capsys, wide_console):
    assert main(["passes", "quantize-static"]) == 0
    out = capsys.readouterr().out
    cls = REGISTRY["quantize-static"]
    assert out.splitlines()[0] == f"quantize-static [lossy] {cls.summary()}"
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == set(cls.option_specs())
    method = [cell.strip() for cell in rows["method"].strip("│").split("│")]
    assert method == ["method", "str", "minmax", "minmax, percentile, entropy, mse", cls.option_specs()["method"].help]
    assert "uint8, int8, none" in rows["activation_type"]


def test_a_pass_without_options_says_so(capsys):
    assert main(["passes", "cleanup"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["no options"]


def test_an_unknown_pass_name_exits_2_with_one_line_naming_the_passes(capsys):
    assert main(["passes", "quantise-static"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "unknown pass 'quantise-static'; available: " in captured.err and "quantize-static" in captured.err
