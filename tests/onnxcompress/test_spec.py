"""Pass specs and TOML recipes: parsing, type coercion, one-line errors."""

from __future__ import annotations

import typing
from typing import Literal

import pytest

from onnxcompress import spec
from onnxcompress.errors import UsageError
from onnxcompress.passes import REGISTRY


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
        ("quantize-static:exclude=/0/*,/1/*", r"bad option '/1/\*' .*; list items are separated by '\|', not ',' \(exclude=/0/\*\|/1/\*\)$"),
        ("test-scale:factor=2,3", r"bad option '3' in 'test-scale:factor=2,3': expected key=value$"),
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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fold-constants:max_folded_mb=-1", r"fold-constants: max_folded_mb must be a finite number >= 0, got -1.0"),
        ("fold-constants:max_folded_mb=inf", r"fold-constants: max_folded_mb must be a finite number >= 0, got inf"),
        ("fuse:opset=99", r"fuse: opset 99 is out of range"),
        ("prune-channels:ratio=1", r"prune-channels: ratio must be in \[0, 1\), got 1.0"),
        ("prune-channels:ratio=-0.2", r"prune-channels: ratio must be in \[0, 1\), got -0.2"),
        ("prune-channels:round_to=0", r"prune-channels: round_to must be at least 1, got 0"),
        ("prune-channels:min_channels=0", r"prune-channels: min_channels must be at least 1, got 0"),
        ("prune-channels:scope=all", r"prune-channels:scope: 'all' is not one of local, global"),
        ("prune-channels:importance=gradient", r"prune-channels:importance: 'gradient' is not one of magnitude, activation, mean_abs, apoz, taylor"),
        ("smooth:alpha=2", r"smooth: alpha must be in \[0, 1\], got 2.0"),
        ("smooth:alpha=nan", r"smooth: alpha must be in \[0, 1\], got nan"),
        ("scale-tokens:min_cut=-0.5", r"scale-tokens: min_cut must be in \[0, 1\], got -0.5"),
        ("split-outliers:channels=0", r"split-outliers: channels must be at least 1, got 0"),
        ("split-outliers:min_ratio=0.5", r"split-outliers: min_ratio must be at least 1, got 0.5"),
        ("quantize-static:method=magic", r"quantize-static:method: 'magic' is not one of minmax, percentile, entropy, mse"),
        ("quantize-static:activation_type=int4", r"quantize-static:activation_type: cannot read 'int4' as uint8\|int8\|none"),
        ("quantize-static:fp32_prefix=all", r"quantize-static:fp32_prefix: 'all' is not one of none, fastest"),
        ("quantize-static:max_drop=1.5", r"quantize-static: max_drop must be in \[0, 1\], got 1.5"),
        ("quantize-static:max_fallback=-1", r"quantize-static: max_fallback must be >= 0, got -1"),
        ("quantize-static:op_types=Conv|Frob", r"quantize-static: op_types \['Frob'\] cannot be quantized here"),
        ("quantize-dynamic:activation_scales=static", r"quantize-dynamic:activation_scales: 'static' is not one of dynamic, calibrated"),
        ("quantize-dynamic:method=percentile", r"quantize-dynamic: method and ranges_file apply only with activation_scales=calibrated"),
        ("quantize-dynamic:gptq=true,weight_type=uint8", r"quantize-dynamic: gptq rounds symmetric int8 weights"),
        ("quantize-dynamic:max_drop=-0.1", r"quantize-dynamic: max_drop must be in \[0, 1\], got -0.1"),
    ],
)
def test_every_pass_refuses_bad_options_when_built_naming_pass_and_option(text, message):
    with pytest.raises(UsageError, match=message) as info:
        spec.parse_pass(text)
    assert "\n" not in str(info.value)


def test_choices_are_listed_with_their_values():
    options = REGISTRY["quantize-static"].option_specs()
    assert options["method"].describe() == "method='minmax' (minmax|percentile|entropy|mse)"
    assert options["weight_type"].describe() == "weight_type=None (uint8|int8|none)"
    assert options["max_drop"].describe() == "max_drop=None (float|none)"


def test_options_declared_with_help_are_read_by_their_type():
    built = spec.parse_pass("prune-channels:exclude=conv1|conv2,max_drop=0.02,scope=global,heads=false")
    assert (built.exclude, built.max_drop, built.scope, built.heads) == (["conv1", "conv2"], 0.02, "global", False)


@pytest.mark.parametrize(("value", "text"), [(None, "none"), (True, "true"), (["a", "b"], "a|b"), (0.5, "0.5"), ("minmax", "minmax")])
def test_spell_writes_values_as_a_spec_does(value, text):
    assert spec.spell(value) == text


def test_every_registered_default_spelled_reads_back_as_itself():
    for name, cls in REGISTRY.items():
        for option in cls.option_specs().values():
            assert spec.coerce(spec.spell(option.default), option.annotation, f"{name}:{option.name}") == option.default


def test_every_shipped_recipe_loads_by_name_and_a_missing_one_lists_them():
    from onnxcompress.spec import load_recipe, shipped_recipes

    assert {"exact", "cnn-int8", "cnn-prune-recover", "transformer-int8"} <= set(shipped_recipes())
    chains = {name: [p.name for p in load_recipe(name)] for name in shipped_recipes()}
    assert chains["exact"] == ["fold-constants", "cleanup", "fuse"]
    assert chains["cnn-int8"][-1] == "quantize-static" and chains["transformer-int8"][-1] == "quantize-dynamic"
    assert chains["cnn-prune-recover"][3:] == ["prune-channels", "recover", "prune-channels", "recover", "quantize-static"]
    with pytest.raises(UsageError, match=r"^recipe nope: no such file, nor a shipped recipe \(cnn-int8, cnn-prune-recover, exact, transformer-int8\)$"):
        load_recipe("nope")
