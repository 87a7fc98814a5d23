"""Pass specs and TOML recipes: parsing, type coercion, one-line errors."""

from __future__ import annotations

import typing
from typing import Literal

import pytest

from onnxcompress import spec
from onnxcompress.errors import UsageError


def test_spec_builds_the_pass_with_typed_options():
    built = spec.parse_pass(" test-scale : factor = 0.25 ")
    assert built.name == "test-scale" and built.factor == 0.25 and isinstance(built.factor, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-such-pass", "unknown pass 'no-such-pass'; available: .*test-noop"),
        ("test-scale:ratio=1", "pass 'test-scale' has no option 'ratio'; options: factor"),
        ("test-scale:factor", "bad option 'factor'"),
        ("test-scale:factor=big", "test-scale:factor: 'big' is not a valid float"),
    ],
)
def test_bad_specs_are_one_line_usage_errors(text, message):
    with pytest.raises(UsageError, match=message) as info:
        spec.parse_pass(text)
    assert "\n" not in str(info.value)


def test_recipe_reads_passes_in_order(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[pass]]\nname = "test-noop"\n\n[[pass]]\nname = "test-scale"\nfactor = 2\n')
    passes = spec.load_recipe(recipe)
    assert [p.name for p in passes] == ["test-noop", "test-scale"] and passes[1].factor == 2.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[[pass]]\nname = "nope"\n', "unknown pass 'nope'"),
        ("[[pass]]\nfactor = 2\n", "has no name"),
        ('title = "x"\n', "expected one or more"),
        ("[[pass]\n", "not valid TOML"),
    ],
)
def test_bad_recipes_are_usage_errors(tmp_path, content, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(content)
    with pytest.raises(UsageError, match=message):
        spec.load_recipe(recipe)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        spec.load_recipe(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "annotation", "value"),
    [
        ("3", int, 3),
        ("yes", bool, True),
        ("off", bool, False),
        ("none", typing.Optional[int], None),
        ("7", int | None, 7),
        ("a|b", list[str], ["a", "b"]),
        ("1|2", tuple[int, ...], (1, 2)),
        ("minmax", Literal["minmax", "entropy"], "minmax"),
    ],
)
def test_coerce(text, annotation, value):
    assert spec.coerce(text, annotation, "p:o") == value


@pytest.mark.parametrize(("text", "annotation"), [("maybe", bool), ("x", Literal["a"]), ("x", int | None), ("x", dict)])
def test_coerce_refuses(text, annotation):
    with pytest.raises(UsageError, match="^p:o: "):
        spec.coerce(text, annotation, "p:o")
