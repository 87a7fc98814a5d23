"""The text corpus: enough distinct, clean, real sentences, deterministic."""

from __future__ import annotations

import re

from onnxcompress.models import corpus


def test_has_two_thousand_distinct_clean_sentences():
    pool = corpus.sentences()
    assert len(pool) >= 2000
    assert len({s.lower() for s in pool}) == len(pool)
    assert all(corpus.is_clean(s) for s in pool)


def test_sentences_are_verbatim_spans_of_the_sources():
    texts = [re.sub(r"\s+", " ", t) for t in corpus.source_texts()]
    blob = "\n".join(texts)
    for sentence in corpus.sentences(50, seed=3):
        assert sentence in blob


def test_sampling_is_deterministic_by_seed():
    assert corpus.sentences(20, seed=1) == corpus.sentences(20, seed=1)
    assert corpus.sentences(20, seed=1) != corpus.sentences(20, seed=2)


def test_split_and_filter_rules():
    text = "First sentence is right here now. Second one follows it closely!\n\n>>> x = 1\n>>> print(x)"
    assert list(corpus.split_sentences(text)) == [
        "First sentence is right here now.",
        "Second one follows it closely!",
    ]
    assert not corpus.is_clean("Too short here.")
    assert not corpus.is_clean("Call foo_bar() with the value set to five.")
    assert corpus.is_clean("This is an ordinary sentence of English prose.")


def test_package_sentences_are_clean_new_and_skip_absent_packages():
    found = corpus.package_sentences(["numpy", "no_such_package_here"])
    corpus_keys = {s.lower() for s in corpus.all_sentences()}
    assert len(found) >= 500
    assert all(corpus.is_clean(s) and s.lower() not in corpus_keys for s in found)
    assert len({s.lower() for s in found}) == len(found)
    assert corpus.package_sentences(["numpy"], seed=1)[:5] != found[:5]
