"""``search``: a grid on the test CNN against a cosine goal, skipping what only adds loss to a miss, failures
recorded and passed over, and the goal, Pareto front and best judged on fixed figures."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import bench, search
from onnxcompress.errors import UsageError
from onnxcompress.fidelity import Fidelity, OutputFidelity

GRID = "prune-channels:ratio={0.25,0.5,0.75},accept_loss=true;{,quantize-static}"


@pytest.fixture
def calibration() -> dict[str, np.ndarray]:
    """32 samples for the test CNN's input ``x``."""
    return {"x": np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)}


def test_search_finds_a_candidate_meeting_a_cosine_goal_and_skips_what_only_adds_loss(cnn_model, calibration):
    result = search.search(cnn_model, [GRID, "quantize-static"], search.Goal(min_cosine=0.85), calibration=calibration,
                           timer=_timer(None))  # the CLI's test times them for real
    by_recipe = {c.recipe: c for c in result.candidates}
    assert len(by_recipe) == 7 and len(cnn_model.graph) == 4  # the input model is untouched
    assert result.best is not None and result.best.meets_goal and result.best.cosine >= 0.85
    assert by_recipe["prune-channels:ratio=0.25,accept_loss=true"].meets_goal  # removes 1 of 4 filters: cosine 0.91 on the first held-out calibration sample (half: 0.77)
    half = by_recipe["prune-channels:ratio=0.5,accept_loss=true"]
    assert half.status == "ok" and half.misses == [f"cosine {half.cosine:.6f} < 0.85"]
    skipped = {r for r, c in by_recipe.items() if c.status == "skipped"}
    assert skipped == {"prune-channels:ratio=0.5,accept_loss=true;quantize-static", "prune-channels:ratio=0.75,accept_loss=true",
                       "prune-channels:ratio=0.75,accept_loss=true;quantize-static"}
    assert all("only adds loss to 'prune-channels:ratio=0.5,accept_loss=true'" in by_recipe[r].reason for r in skipped)
    ran = [c for c in result.candidates if c.status == "ok"]
    assert all(c.latency_ratio == 1.0 for c in ran)
    assert by_recipe["quantize-static"].size_bytes < result.reference.size_bytes
    assert [c.recipe for c in result.pareto] == ["prune-channels:ratio=0.25,accept_loss=true;quantize-static", "quantize-static"]


def test_exhaustive_runs_every_candidate_and_a_failure_stops_nothing(cnn_model):
    recipes = ["quantize-static", "prune-channels:ratio={0.5,0.75},accept_loss=true"]  # no calibration: quantize-static fails
    result = search.search(cnn_model, recipes, search.Goal(min_cosine=0.99), exhaustive=True, timer=_timer(None))
    statuses = {c.recipe: c.status for c in result.candidates}
    assert statuses == {"quantize-static": "failed", "prune-channels:ratio=0.5,accept_loss=true": "ok",
                        "prune-channels:ratio=0.75,accept_loss=true": "ok"}
    assert "calibration" in result.candidates[0].reason and "\n" not in result.candidates[0].reason
    assert result.best is None  # both prunings miss 0.99


def test_a_goal_is_required_and_checked():
    with pytest.raises(UsageError, match="no goal given"):
        search.Goal()
    with pytest.raises(UsageError, match=r"minimum cosine must be in \[-1, 1\]"):
        search.Goal(min_cosine=1.5)
    with pytest.raises(UsageError, match="max_latency must be above 0"):
        search.Goal(max_latency=0)


def test_max_drop_without_labelled_data_is_refused_before_anything_runs(cnn_model):
    with pytest.raises(UsageError, match="needs labelled data"):
        search.search(cnn_model, ["cleanup"], search.Goal(max_drop=0.01))


def _candidate(recipe: str, size: int, cosine: float) -> search.Candidate:
    fidelity = Fidelity([OutputFidelity("y", 0.1, 1.0, cosine, True)])
    return search.Candidate(recipe, "ok", size_bytes=size, fidelity=fidelity, model=recipe.encode())


def _timer(ms: dict[bytes, float] | None) -> search.Timer:
    """Fixed latencies by model bytes (None: 1 ms each), in place of a side-by-side measurement."""
    return lambda models: [bench.Latency(*[ms[m] if ms else 1.0] * 3, 1, 1, 0, 1, 1) for m in models]


@pytest.mark.parametrize(("prefer", "best"), [("latency", "fast"), ("size", "small"), ("quality", "faithful")])
def test_conclude_judges_the_goal_marks_the_front_and_prefers(prefer, best):
    candidates = [_candidate("fast", 60, 0.991), _candidate("small", 20, 0.992), _candidate("faithful", 80, 0.999),
                  _candidate("dominated", 90, 0.990), _candidate("unfaithful", 10, 0.5)]
    evaluation = search.Evaluation(_candidate("input", 100, 1.0), candidates, inputs=None)
    ms = {b"input": 10.0, b"fast": 4.0, b"small": 6.0, b"faithful": 8.0, b"dominated": 9.0, b"unfaithful": 1.0}
    result = search.conclude(evaluation, search.Goal(min_cosine=0.99, max_latency=0.95), timer=_timer(ms), prefer=prefer)
    assert result.best.recipe == best
    assert [c.recipe for c in result.candidates if c.meets_goal] == ["fast", "small", "faithful", "dominated"]
    assert [c.recipe for c in result.pareto] == ["fast", "small", "faithful", "unfaithful"]  # the fastest and smallest is on it too
    assert result.candidates[4].misses == ["cosine 0.500000 < 0.99"] and result.candidates[3].latency_ratio == 0.9
    document = result.to_dict()
    assert document["best"]["recipe"] == best and document["pareto"] == ["fast", "small", "faithful", "unfaithful"]
    assert document["candidates"][0]["latency_ratio"] == pytest.approx(0.4) and document["candidates"][0]["outputs"][0]["name"] == "y"
