"""Several pipelines on the same model, measured side by side, with the Pareto-best marked.

Each recipe runs on its own copy of the model with the pipeline's checks but without its own
benchmark; then the input and every result are timed together in one alternating
``bench.measure`` run, so the latencies are ratios taken under the same machine load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import onnx_ir as ir

from onnxcompress import bench, io, runtime, spec
from onnxcompress.errors import UsageError
from onnxcompress.passes import CompressionPass
from onnxcompress.pipeline import Measurement, Pipeline
from onnxcompress.records import Outcome

RECIPE_SEPARATOR = ";"


def pareto_front(points: Sequence[tuple[float, ...]]) -> list[bool]:
    """For each point (every coordinate: smaller is better) whether no other point dominates it."""
    return [not any(_dominates(other, p) for other in points) for p in points]


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def parse_recipe(recipe: str) -> list[CompressionPass]:
    """A TOML recipe path, or specs separated by ``;`` (``"fuse;quantize-dynamic"``)."""
    if recipe.strip().endswith(".toml") or Path(recipe).is_file():
        return spec.load_recipe(recipe)
    specs = [s for s in (part.strip() for part in recipe.split(RECIPE_SEPARATOR)) if s]
    if not specs:
        raise UsageError(f"empty recipe {recipe!r}: give PASS;PASS... or a .toml file")
    return [spec.parse_pass(s) for s in specs]


def compare_recipes(
    model: ir.Model,
    recipes: Sequence[str],
    *,
    measurement: Measurement | None = None,
    calibration: object | None = None,
) -> list[Outcome]:
    """Run every recipe on a copy of ``model``; the first outcome is the input itself."""
    if not recipes:
        raise UsageError("no recipes given: use -r 'PASS;PASS' (or a .toml recipe) at least once")
    m = measurement or Measurement()
    feeds = dict(m.feeds) if m.feeds is not None else runtime.synthetic_inputs(model, batch=m.batch, shapes=m.input_shapes)
    checks_only = dataclasses.replace(m, benchmark=False, feeds=feeds)
    built = [(r, parse_recipe(r)) for r in recipes]
    results = [("input", Pipeline([], measurement=checks_only).run(io.clone(model), calibration=calibration))]
    results += [(name, Pipeline(passes, measurement=checks_only).run(io.clone(model), calibration=calibration)) for name, passes in built]
    sessions = [runtime.session(r.model, threads=m.threads) for _, r in results]
    latencies = bench.measure(sessions, [feeds] * len(sessions), batch=m.batch, threads=m.threads, rounds=m.rounds)
    outcomes = [_outcome(name, r, lat, latencies[0].median_ms) for (name, r), lat in zip(results, latencies)]
    mark_pareto(outcomes)
    return outcomes


def mark_pareto(outcomes: Sequence[Outcome]) -> None:
    """Set ``pareto`` on each outcome: smaller size, lower latency, higher quality."""
    front = pareto_front([(o.size_bytes, o.latency_ms, -o.quality) for o in outcomes])
    for outcome, best in zip(outcomes, front):
        outcome.pareto = best


def _outcome(name: str, result, latency: bench.Latency, base_ms: float) -> Outcome:
    final = result.report.steps[-1]
    quality = final.accuracy if final.accuracy is not None else final.fidelity.cosine
    return Outcome(name, final.size_bytes, latency.median_ms, quality, base_ms / latency.median_ms, model=result.model)
