"""Corpus entries: missing packages fail loudly with the install command, exports are cached by version."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxcompress.models.hardening import ENTRIES, MissingPackage, cache, entry, fidelity
from onnxcompress.models.hardening.entry import INSTALL_HINT, SPLITS, Entry, split_seed


def identity_model(path):
    """A one-node model written to ``path``; counts its calls so a test can see the cache at work."""
    identity_model.calls += 1
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), path)
    return path


identity_model.calls = 0


def fake_entry(**changes) -> Entry:
    base = Entry(
        name="fake", source="test", requires=("numpy",), make=identity_model,
        inputs=lambda split, count: {"x": np.zeros((count, 1), np.float32)}, fidelity=fidelity.top1("y"),
    )
    return dataclasses.replace(base, **changes)


def test_a_missing_package_names_itself_and_the_install_command():
    missing = fake_entry(requires=("numpy", "no-such-distribution-xyz"))
    with pytest.raises(MissingPackage, match="no-such-distribution-xyz") as info:
        missing.model()
    assert INSTALL_HINT in str(info.value)
    with pytest.raises(MissingPackage):
        missing.feeds("held-out", 1)


def test_exports_are_built_once_and_rebuilt_when_the_revision_changes(tmp_path):
    first = fake_entry().model(tmp_path)
    calls = identity_model.calls
    assert fake_entry().model(tmp_path) == first
    assert identity_model.calls == calls
    revised = fake_entry(revision=2).model(tmp_path)
    assert revised != first and identity_model.calls == calls + 1
    assert cache.key(fake_entry()) != cache.key(fake_entry(revision=2))


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "corpus"))
    assert cache.folder() == tmp_path / "corpus" and cache.folder().is_dir()


def test_splits_are_checked_and_seeded_apart():
    with pytest.raises(ValueError, match="split"):
        fake_entry().feeds("training", 1)
    assert len({split_seed(split) for split in SPLITS}) == len(SPLITS)


def test_the_registry_names_every_entry_once_and_both_exporters():
    assert entry("captcha-crnn") is ENTRIES["captcha-crnn"]
    with pytest.raises(KeyError, match="known"):
        entry("nope")
    exported = [name for name in ENTRIES if name.endswith("-legacy")]
    assert exported and all(name.replace("-legacy", "-dynamo") in ENTRIES for name in exported)
