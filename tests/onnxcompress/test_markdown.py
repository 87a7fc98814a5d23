"""Tests for onnxcompress.markdown: the one Markdown table writer."""

from __future__ import annotations

from onnxcompress.markdown import records_table, table


def test_table_has_header_rule_and_rows():
    assert table(["a", "b"], [[1, "x"], [2.5, "y"]]) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | y |"]


def test_alignment_and_pipes_in_cells():
    lines = table(["name", "n"], [["a|b", 3]], align=["---", "---:"])
    assert lines[1] == "|---|---:|"
    assert lines[2] == "| a\\|b | 3 |"


def test_records_table_takes_the_first_records_keys():
    assert records_table([{"k": "1", "v": "2"}, {"v": "4", "k": "3"}])[2:] == ["| 1 | 2 |", "| 3 | 4 |"]
    assert records_table([]) == []
