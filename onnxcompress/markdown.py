"""Markdown tables, written one way for every report, stage table and generated benchmark page."""

from __future__ import annotations

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
