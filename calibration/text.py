"""Calibration batches from sentences, tokenized with a local ``tokenizer.json`` (the ``text`` extra).

Sentences come from a list or from a text file (one per non-empty line, read lazily, so a large file
is never held in memory). The ``tokenizers`` package is imported only when a reader is built.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxcompress.calibration.validation import model_inputs
from onnxcompress.errors import UsageError, first_line

ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class TextReader:
    """Batches of tokenized sentences: int64 ``[batch, seq]`` arrays for the chosen input names."""

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str],
        tokenizer_dir: str | os.PathLike,
        *,
        max_length: int = 128,
        pad_to: int | None = None,
        batch_size: int = 8,
        input_names: Sequence[str] = tuple(ENCODING_FIELDS),
    ) -> None:
        unknown = [n for n in input_names if n not in ENCODING_FIELDS]
        if unknown:
            raise UsageError(f"text inputs {unknown} are unknown; choose from {list(ENCODING_FIELDS)}")
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        self.source = source if isinstance(source, (list, tuple)) else Path(source)
        if isinstance(self.source, Path) and not self.source.is_file():
            raise UsageError(f"{self.source}: no such text file")
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.max_length, self.pad_to, self.batch_size = max_length, pad_to, batch_size
        self.input_names = list(input_names)

    @classmethod
    def for_model(cls, source: str | os.PathLike | Sequence[str], tokenizer_dir: str | os.PathLike, model: ir.Model, **options) -> TextReader:
        """A reader feeding every input of ``model`` (named as in ``ENCODING_FIELDS``), padded to the sequence
        length its inputs declare when that is fixed; ``options`` (``max_length``, ``batch_size``) go to the reader."""
        inputs = model_inputs(model)
        lengths = {v.shape[1] for v in inputs if v.shape is not None and len(v.shape) == 2 and isinstance(v.shape[1], int)}
        pad_to = lengths.pop() if len(lengths) == 1 else None
        return cls(source, tokenizer_dir, input_names=[v.name for v in inputs], **{"pad_to": pad_to, **options})

    def describe(self) -> str:
        """Where the sentences come from and how they are tokenized, in one line (the CLI says it on stderr)."""
        source = self.source if isinstance(self.source, Path) else f"{len(self.source)} given sentences"
        padding = f"padded to {self.pad_to} tokens" if self.pad_to else f"padded to the longest of each {self.batch_size}"
        return f"sentences of {source}, tokenized for {', '.join(self.input_names)}, at most {self.max_length} tokens, {padding}"

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``batch_size`` sentences at a time, padded to the longest (or to ``pad_to``)."""
        sentences = self._sentences()
        while chunk := list(islice(sentences, self.batch_size)):
            feeds = encode(self.tokenizer, chunk, max_length=self.max_length, pad_to=self.pad_to)
            yield {name: feeds[name] for name in self.input_names}

    def _sentences(self) -> Iterator[str]:
        if isinstance(self.source, Path):
            return _lines(self.source)
        return iter(self.source)


def load_tokenizer(tokenizer_dir: str | os.PathLike):
    """The ``tokenizers.Tokenizer`` saved as ``tokenizer.json`` in ``tokenizer_dir``."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        raise UsageError(f"{tokenizer_dir}: no tokenizer.json in this folder")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UsageError("text calibration needs the tokenizers package: pip install 'onnxcompress[text]'") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own Exception subclass for unreadable files
        reason = first_line(exc)
        raise UsageError(f"{path}: not a readable tokenizer ({reason})") from None


def encode(tokenizer, sentences: Iterable[str], *, max_length: int = 128, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Tokenize into int64 ``input_ids``/``attention_mask``/``token_type_ids`` feeds.

    Rows are truncated to ``max_length`` and padded to the longest, or to exactly ``pad_to`` tokens.
    """
    tokenizer.enable_truncation(max_length=min(max_length, pad_to) if pad_to else max_length)
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    tokenizer.enable_padding(length=pad_to, pad_id=pad_id, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(list(sentences))
    return {
        name: np.array([getattr(e, field) for e in encodings], dtype=np.int64)
        for name, field in ENCODING_FIELDS.items()
    }


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in stream:
            if line.strip():
                yield line.strip()
