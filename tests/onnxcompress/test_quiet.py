"""quiet: a dependency's warnings are dropped while it runs, and the logger's level comes back."""

from __future__ import annotations

import logging

from onnxcompress.quiet import quiet


def test_root_warnings_are_dropped_inside_and_the_level_restored(caplog):
    root = logging.getLogger()
    before = root.level
    with caplog.at_level(logging.WARNING), quiet():
        logging.warning("Expected bias 'b' to be an initializer")
        logging.error("still shown")
    assert [record.getMessage() for record in caplog.records] == ["still shown"]
    assert root.level == before


def test_a_named_logger_is_quieted_alone():
    named = logging.getLogger("some.dependency")
    with quiet("some.dependency"):
        assert named.level == logging.ERROR and logging.getLogger().level != logging.ERROR
    assert named.level == logging.NOTSET
