"""Markdown tables, written one way for every report, stage table and generated benchmark page, and the marked
sections one tool keeps in a page another tool writes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: Sequence[str] | None = None) -> list[str]:
    """The lines of a Markdown table; ``align`` holds one ``---``/``---:``/``:---`` per column (left by default).

    A ``|`` inside a cell is escaped, so a message quoted in a cell cannot split the row.
    """
    rule = align if align is not None else ["---"] * len(header)
    lines = [_row(header), "|" + "|".join(rule) + "|"]
    return lines + [_row(row) for row in rows]


def records_table(records: Sequence[Mapping[str, object]]) -> list[str]:
    """A table of records that share their keys, the first record's keys as the header (no lines for none)."""
    if not records:
        return []
    header = list(records[0])
    return table(header, ([record[key] for key in header] for record in records))


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def with_section(page: str, name: str, body: str) -> str:
    """``page`` with its section ``name`` (``body`` between two marker comments) written anew, or appended when it
    has none: how a tool writes its part of a page another tool generates (which keeps it, see ``sections``)."""
    start, end = _markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    if start in page and end in page:
        before, rest = page.split(start, 1)
        return before + block + rest.split(end, 1)[1].lstrip("\n")
    return page.rstrip("\n") + "\n\n" + block


def sections(page: str) -> str:
    """Every section of ``page`` that ``with_section`` wrote, markers included: what a tool writing the page again keeps."""
    found = re.finditer(r"<!-- section (\S+) -->\n.*?<!-- end of section \1 -->\n", page, re.DOTALL)
    return "".join(match.group(0) for match in found)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section {name} -->", f"<!-- end of section {name} -->"
