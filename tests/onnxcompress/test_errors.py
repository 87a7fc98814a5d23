"""Tests for onnxcompress.errors: the one-line message helper every error report uses."""

from __future__ import annotations

import pytest

from onnxcompress.errors import first_line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("\n  shape mismatch  \n(details)\n"), "shape mismatch"),
        (KeyError(), "KeyError"),
        ("", ""),
        ("\nfirst\nsecond", "first"),
    ],
)
def test_first_line_is_the_first_non_blank_line(error, expected):
    assert first_line(error) == expected
