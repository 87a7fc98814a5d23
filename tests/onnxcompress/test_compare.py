"""Comparing recipes: the Pareto set on fixed numbers, recipe parsing, a real side-by-side run."""

from __future__ import annotations

import pytest

from onnxcompress import compare
from onnxcompress.compare import Outcome
from onnxcompress.errors import UsageError
from onnxcompress.pipeline import Measurement

from .conftest import SlowDown


def test_pareto_front_on_fixed_points():
    points = [(1.0, 5.0), (2.0, 2.0), (3.0, 3.0), (5.0, 1.0), (2.0, 2.0), (1.0, 6.0)]
    assert compare.pareto_front(points) == [True, True, False, True, True, False]


def test_mark_pareto_prefers_small_fast_and_faithful():
    outcomes = [
        Outcome("input", 100, 10.0, 1.0),
        Outcome("fuse", 100, 8.0, 1.0),  # dominates input: same size and quality, faster
        Outcome("int8", 30, 6.0, 0.98),  # smaller and faster, less faithful: a trade-off
        Outcome("bad", 40, 7.0, 0.90),  # dominated by int8 on all three
    ]
    compare.mark_pareto(outcomes)
    assert [o.name for o in outcomes if o.pareto] == ["fuse", "int8"]


def test_parse_recipe_splits_specs_and_reads_toml(tmp_path):
    assert [p.name for p in compare.parse_recipe("test-noop; test-scale:factor=2")] == ["test-noop", "test-scale"]
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[pass]]\nname = "test-scale"\nfactor = 3.0\n')
    (built,) = compare.parse_recipe(str(recipe))
    assert built.factor == 3.0


@pytest.mark.parametrize("bad", ["no-such-pass", " ; "])
def test_bad_recipe_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        compare.parse_recipe(bad)


def test_compare_recipes_measures_all_side_by_side(mlp_model):
    outcomes = compare.compare_recipes(mlp_model, ["test-noop", "test-slowdown:depth=200", "test-scale:factor=-1"], measurement=Measurement(rounds=2))
    names = [o.name for o in outcomes]
    assert names == ["input", "test-noop", "test-slowdown:depth=200", "test-scale:factor=-1"]
    by_name = dict(zip(names, outcomes))
    assert by_name["test-slowdown:depth=200"].latency_ms > by_name["input"].latency_ms
    assert by_name["test-scale:factor=-1"].quality < 0.5 < by_name["test-noop"].quality
    assert not by_name["test-slowdown:depth=200"].pareto  # bigger and slower than the input, no more faithful
    assert by_name["input"].speedup == 1.0 and len(mlp_model.graph) == 4  # the input model is untouched


def test_outcome_to_dict_leaves_a_deep_model_alone(mlp_model):
    deep = SlowDown(depth=600)(mlp_model).model  # a chain deep enough that copying the model recursively fails
    outcome = Outcome("deep", 10, 1.0, 0.5, model=deep)
    assert outcome.to_dict() == {"name": "deep", "size_bytes": 10, "latency_ms": 1.0, "quality": 0.5, "speedup": 1.0, "pareto": False}
    assert outcome.model is deep
