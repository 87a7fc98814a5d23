"""Tests for onnxcompress.markdown: the one Markdown table writer."""

from __future__ import annotations

from onnxcompress.markdown import records_table, sections, table, with_section


def test_table_has_header_rule_and_rows():
    assert table(["a", "b"], [[1, "x"], [2.5, "y"]]) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | y |"]


def test_alignment_and_pipes_in_cells():
    lines = table(["name", "n"], [["a|b", 3]], align=["---", "---:"])
    assert lines[1] == "|---|---:|"
    assert lines[2] == "| a\\|b | 3 |"


def test_records_table_takes_the_first_records_keys():
    assert records_table([{"k": "1", "v": "2"}, {"v": "4", "k": "3"}])[2:] == ["| 1 | 2 |", "| 3 | 4 |"]
    assert records_table([]) == []


def test_a_section_is_written_anew_in_place_and_kept_when_the_page_is_written_again():
    page = with_section("# Page\n\nfirst\n", "sizes", "## Sizes\n\n| a |")
    assert page == "# Page\n\nfirst\n\n<!-- section sizes -->\n## Sizes\n\n| a |\n<!-- end of section sizes -->\n"
    page = with_section(page + "\nafter\n", "sizes", "## Sizes again")
    assert page.count("<!-- section sizes -->") == 1 and "| a |" not in page and page.endswith("end of section sizes -->\nafter\n")
    rewritten = "# Page\n\nsecond\n\n" + sections(page)
    assert rewritten == "# Page\n\nsecond\n\n<!-- section sizes -->\n## Sizes again\n<!-- end of section sizes -->\n"
