"""Calibration batches from sentences, tokenized with a local ``tokenizer.json`` (the ``text`` extra).

Sentences come from a list or from a text file (one per non-empty line, read lazily, so a large file
is never held in memory). The ``tokenizers`` package is imported only when a reader is built.
A decoder exported with its key-value cache (``past_key_values.*``, ``position_ids``) is fed as
generation's first step feeds it: positions 0..n-1 and every cache empty.
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
from onnxcompress.synthetic_inputs import starting_state

ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
TEXT_INPUTS = (*ENCODING_FIELDS, "position_ids")
ENCODER_PREFIX = "encoder_"  # a seq2seq decoder's inputs from its encoder (Optimum's names)


class TextReader:
    """Batches of tokenized sentences: int64 ``[batch, seq]`` arrays for the chosen input names, and each of
    ``states`` (cache or recurrent-state inputs) at the value a sequence starts from."""

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str],
        tokenizer_dir: str | os.PathLike,
        *,
        max_length: int = 128,
        pad_to: int | None = None,
        batch_size: int = 8,
        input_names: Sequence[str] = tuple(ENCODING_FIELDS),
        states: Sequence[ir.Value] = (),
    ) -> None:
        unknown = [n for n in input_names if n not in TEXT_INPUTS]
        if any(name.startswith(ENCODER_PREFIX) for name in [*unknown, *(v.name for v in states)]):
            raise UsageError("the model is a decoder reading an encoder's outputs (encoder_hidden_states, encoder_attention_mask), "
                             "which sentences alone cannot feed: run the encoder on them and give every input as --calibration FILE.npz")
        if unknown:
            raise UsageError(f"text inputs {unknown} are unknown; choose from {list(TEXT_INPUTS)} (or a cache or state input)")
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        self.source = source if isinstance(source, (list, tuple)) else Path(source)
        if isinstance(self.source, Path) and not self.source.is_file():
            raise UsageError(f"{self.source}: no such text file")
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.max_length, self.pad_to, self.batch_size = max_length, pad_to, batch_size
        self.text_inputs, self.states = list(input_names), list(states)
        self.input_names = [*self.text_inputs, *(v.name for v in self.states)]

    @classmethod
    def for_model(cls, source: str | os.PathLike | Sequence[str], tokenizer_dir: str | os.PathLike, model: ir.Model, **options) -> TextReader:
        """A reader feeding every input of ``model`` (named as in ``TEXT_INPUTS``, or a cache or state input), padded
        to the sequence length its inputs declare when that is fixed; ``options`` (``max_length``, ``batch_size``) go
        to the reader."""
        states = [v for v in model_inputs(model) if starting_state(v, 1) is not None]
        inputs = [v for v in model_inputs(model) if v not in states]
        lengths = {v.shape[1] for v in inputs if v.shape is not None and len(v.shape) == 2 and isinstance(v.shape[1], int)}
        pad_to = lengths.pop() if len(lengths) == 1 else None
        return cls(source, tokenizer_dir, input_names=[v.name for v in inputs], states=states, **{"pad_to": pad_to, **options})

    def describe(self) -> str:
        """Where the sentences come from and how they are tokenized, in one line (the CLI says it on stderr)."""
        source = self.source if isinstance(self.source, Path) else f"{len(self.source)} given sentences"
        padding = f"padded to {self.pad_to} tokens" if self.pad_to else f"padded to the longest of each {self.batch_size}"
        states = f", {len(self.states)} cache or state input(s) as at a sequence's start (empty)" if self.states else ""
        return f"sentences of {source}, tokenized for {', '.join(self.text_inputs)}, at most {self.max_length} tokens, {padding}{states}"

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``batch_size`` sentences at a time, padded to the longest (or to ``pad_to``)."""
        sentences = self._sentences()
        while chunk := list(islice(sentences, self.batch_size)):
            feeds = encode(self.tokenizer, chunk, max_length=self.max_length, pad_to=self.pad_to)
            feeds["position_ids"] = positions(feeds["input_ids"].shape)
            yield {name: feeds[name] for name in self.text_inputs} | {v.name: starting_state(v, len(chunk)) for v in self.states}

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


def positions(shape: tuple[int, int]) -> np.ndarray:
    """int64 ``position_ids`` 0..n-1 on each row: how a model numbers a right-padded sentence's tokens itself."""
    return np.broadcast_to(np.arange(shape[1], dtype=np.int64), shape).copy()


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in stream:
            if line.strip():
                yield line.strip()
