"""The corpus: every entry by name, in the order the table lists them."""

from __future__ import annotations

from onnxcompress.models.hardening import captcha, detector, hf, hf_towers, ort_optimized, torch_encoder, torch_lstm, tumor, yolov8
from onnxcompress.models.hardening.entry import Entry

ENTRIES: dict[str, Entry] = {
    entry.name: entry
    for entry in (captcha.ENTRY, tumor.ENTRY, *torch_encoder.ENTRIES, *torch_lstm.ENTRIES, *hf.ENTRIES, *hf_towers.ENTRIES, *ort_optimized.ENTRIES, *detector.ENTRIES, *yolov8.ENTRIES)
}


def entry(name: str) -> Entry:
    """The entry called ``name``; a ``KeyError`` lists the known names."""
    try:
        return ENTRIES[name]
    except KeyError:
        raise KeyError(f"no corpus entry {name!r}; known: {', '.join(ENTRIES)}") from None
