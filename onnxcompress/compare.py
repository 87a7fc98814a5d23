"""Several pipelines on the same model, measured side by side, with the Pareto-best marked.

Each recipe runs as a task of an engine (``engine``: here, or on Ray workers with ``workers`` > 1 or an
``address``) on its own copy of the model, with the pipeline's checks but without its own benchmark
(``trial``); then, every task done, the input and every result are timed together in this process in one
alternating ``bench.measure`` run, so the latencies are ratios taken under the same machine load and no
two timings share a machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx_ir as ir

from onnxcompress import bench, grid, spec, trial
from onnxcompress.engine import make_engine
from onnxcompress.errors import UsageError
from onnxcompress.passes import CompressionPass
from onnxcompress.pipeline import Measurement
from onnxcompress.records import Outcome

RECIPE_SEPARATOR = grid.SEPARATOR


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
    workers: int = 1,
    address: str | None = None,
) -> list[Outcome]:
    """Run every recipe on a copy of ``model`` (on ``workers`` Ray workers, or the Ray cluster at ``address``,
    when given); the first outcome is the input itself. The first recipe that fails raises its error."""
    if not recipes:
        raise UsageError("no recipes given: use -r 'PASS;PASS' (or a .toml recipe) at least once")
    m = measurement or Measurement()
    built = [("input", []), *((r, parse_recipe(r)) for r in recipes)]
    with make_engine(workers, address) as engine:
        inputs = trial.Inputs.of(model, m, calibration, engine.task_threads)
        shared = engine.share(inputs)
        trials = [future.result() for future in [engine.submit(trial.run, shared, name, passes) for name, passes in built]]
    failed = next((t for t in trials if t.failure is not None), None)
    if failed is not None:
        raise failed.failure
    latencies = time_side_by_side([t.model for t in trials], inputs, rounds=m.rounds)
    outcomes = [_outcome(t, lat, latencies[0].median_ms, model) for t, lat in zip(trials, latencies)]
    mark_pareto(outcomes)
    return outcomes


def time_side_by_side(models: Sequence[bytes], inputs: trial.Inputs, *, rounds: int) -> list[bench.Latency]:
    """Latency of each serialized model on ``inputs``' feeds, all in one alternating ``bench.measure`` run in this process."""
    sessions = bench.sessions(models, threads=inputs.threads)
    return bench.measure(sessions, [inputs.feeds] * len(sessions), batch=inputs.batch, threads=inputs.threads, rounds=rounds)


def mark_pareto(outcomes: Sequence[Outcome]) -> None:
    """Set ``pareto`` on each outcome: smaller size, lower latency, higher quality."""
    front = pareto_front([(o.size_bytes, o.latency_ms, -o.quality) for o in outcomes])
    for outcome, best in zip(outcomes, front):
        outcome.pareto = best


def _outcome(done: trial.Trial, latency: bench.Latency, base_ms: float, source: ir.Model) -> Outcome:
    final = done.steps[-1]
    quality = final.accuracy if final.accuracy is not None else final.fidelity.cosine
    model = trial.from_bytes(done.model, like=source)
    return Outcome(done.name, final.size_bytes, latency.median_ms, quality, base_ms / latency.median_ms, model=model)
