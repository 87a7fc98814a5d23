"""A search over recipes for the best model meeting a goal, with the Pareto front and the record of every candidate.

The recipes (grids expanded: ``grid``) are the candidates. Each runs as a task of an engine (``engine``: here,
or on Ray workers) through the pipeline's checks (``trial``), which gives its size and its outputs' agreement
with the input (and its accuracy with labelled data). A candidate that fails is recorded with its one-line
reason and the search goes on. With a quality goal (``min_cosine``, ``max_drop``) a candidate waits for the
candidates it only adds loss to (``lossier``), and is skipped, with the name of the one it builds on, when one of
them ran and missed that goal; the set of candidates run is therefore the same on any engine. Every task done,
the input and every candidate that ran are timed side by side in this process (one alternating ``bench.measure``
run, as ``compare`` does), never two timings at once. Then each candidate is judged against the goal, the
Pareto front (size, latency, quality) is marked and the best candidate meeting the goal is the one ``prefer``
names (fastest by default; ties go to the smaller, then the more faithful).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

import onnx_ir as ir

from onnxcompress import bench, compare, grid, lossier, trial
from onnxcompress.defaults import Prefer
from onnxcompress.engine import Engine, make_engine
from onnxcompress.errors import UsageError, first_line
from onnxcompress.fidelity import Fidelity
from onnxcompress.pipeline import Measurement
from onnxcompress.records import StepRecord

Timer = Callable[[Sequence[bytes]], list[bench.Latency]]  # serialized models -> their latencies, measured side by side
MB = 1e6


@dataclasses.dataclass(frozen=True)
class Goal:
    """What a candidate must reach: outputs' cosine with the input's at least ``min_cosine``, top-1 accuracy at most
    ``max_drop`` below the input's (labelled data), latency at most ``max_latency`` times the input's, size at most
    ``max_size_mb`` megabytes. None: no such limit."""

    min_cosine: float | None = None
    max_drop: float | None = None
    max_latency: float | None = None
    max_size_mb: float | None = None

    def __post_init__(self) -> None:
        if all(value is None for value in dataclasses.astuple(self)):
            raise UsageError("no goal given: set a minimum cosine (--min-cosine), a maximum accuracy drop (--max-drop, with --labels), "
                             "a maximum latency ratio (--max-latency) or size (--max-size)")
        if self.min_cosine is not None and not -1 <= self.min_cosine <= 1:
            raise UsageError(f"the minimum cosine must be in [-1, 1], got {self.min_cosine}")
        if self.max_drop is not None and not 0 <= self.max_drop <= 1:
            raise UsageError(f"the maximum accuracy drop must be in [0, 1], got {self.max_drop}")
        for name in ("max_latency", "max_size_mb"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise UsageError(f"goal {name} must be above 0, got {getattr(self, name)}")

    @property
    def judges_quality(self) -> bool:
        """Whether the goal limits the loss (cosine or accuracy), which makes skipping lossier candidates sound."""
        return self.min_cosine is not None or self.max_drop is not None

    def quality_misses(self, candidate: Candidate) -> list[str]:
        """Where ``candidate``'s outputs or accuracy miss the goal, one phrase each."""
        misses = []
        if self.min_cosine is not None and candidate.cosine < self.min_cosine:
            misses.append(f"cosine {candidate.cosine:.6f} < {self.min_cosine}")
        if self.max_drop is not None and candidate.accuracy_drop is None:
            misses.append("accuracy not measured")
        elif self.max_drop is not None and candidate.accuracy_drop > self.max_drop:
            misses.append(f"accuracy drop {candidate.accuracy_drop:.4f} > {self.max_drop}")
        return misses

    def misses(self, candidate: Candidate) -> list[str]:
        """Every way a candidate that ran misses the goal (none: it meets it)."""
        misses = self.quality_misses(candidate)
        if self.max_latency is not None and candidate.latency_ratio is not None and candidate.latency_ratio > self.max_latency:
            misses.append(f"latency {candidate.latency_ratio:.3f}x > {self.max_latency}x")
        if self.max_size_mb is not None and candidate.size_bytes / MB > self.max_size_mb:
            misses.append(f"size {candidate.size_bytes / MB:.3f} MB > {self.max_size_mb} MB")
        return misses


@dataclasses.dataclass
class Candidate:
    """One recipe of the search: ``status`` ok (it ran), failed (``reason`` says why) or skipped (``reason`` names
    the cheaper candidate that missed the goal), and what it measured."""

    recipe: str
    status: str
    reason: str | None = None
    size_bytes: int = 0
    params: int = 0
    fidelity: Fidelity | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    latency: bench.Latency | None = None
    latency_ratio: float | None = None
    seconds: float = 0.0
    steps: list[StepRecord] = dataclasses.field(default_factory=list)
    misses: list[str] = dataclasses.field(default_factory=list)
    meets_goal: bool = False
    pareto: bool = False
    model: bytes | None = dataclasses.field(default=None, repr=False)

    @property
    def cosine(self) -> float:
        """The smallest cosine of any output with the input's (0 when nothing was measured)."""
        return self.fidelity.cosine if self.fidelity is not None else 0.0

    @property
    def quality(self) -> float:
        """Accuracy with labelled data, else the cosine: what the Pareto front and ``prefer=quality`` rank by."""
        return self.accuracy if self.accuracy is not None else self.cosine

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what it measured, per output agreement, the goal's verdict and its pipeline's steps (not the model)."""
        outputs = [] if self.fidelity is None else [
            {"name": o.name, "cosine": o.cosine, "max_abs_err": o.max_abs_err, "slice_error": o.worst_slice.error, "changed": o.changed,
             "exact": o.exact}
            for o in self.fidelity.outputs]
        return {
            "recipe": self.recipe,
            "status": self.status,
            "reason": self.reason,
            "size_mb": self.size_bytes / MB if self.status == "ok" else None,
            "params": self.params if self.status == "ok" else None,
            "latency_ms": self.latency.median_ms if self.latency else None,
            "latency_ratio": self.latency_ratio,
            "latency": self.latency.to_dict() if self.latency else None,
            "cosine": self.fidelity.cosine if self.fidelity else None,
            "slice_error": self.fidelity.slice_error if self.fidelity else None,
            "outputs": outputs,
            "accuracy": self.accuracy,
            "accuracy_drop": self.accuracy_drop,
            "meets_goal": self.meets_goal,
            "misses": self.misses,
            "pareto": self.pareto,
            "seconds": self.seconds,
            "steps": [step.to_dict() for step in self.steps],
        }


@dataclasses.dataclass
class Evaluation:
    """Every candidate compressed and compared with the input (``reference``, the input's own record), not yet timed."""

    reference: Candidate
    candidates: list[Candidate]
    inputs: trial.Inputs


@dataclasses.dataclass
class SearchResult:
    """The input's record, every candidate in the order given, the best meeting the goal (None: none does), the goal."""

    reference: Candidate
    candidates: list[Candidate]
    best: Candidate | None
    goal: Goal
    prefer: Prefer

    @property
    def pareto(self) -> list[Candidate]:
        """The candidates no other candidate beats on size, latency and quality at once."""
        return [c for c in self.candidates if c.pareto]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: goal, input, best (with its recipe), the Pareto front's recipes and every candidate."""
        return {
            "goal": dataclasses.asdict(self.goal),
            "prefer": self.prefer,
            "input": self.reference.to_dict(),
            "best": self.best.to_dict() if self.best else None,
            "pareto": [c.recipe for c in self.pareto],
            "candidates": [c.to_dict() for c in self.candidates],
        }


def search(
    model: ir.Model,
    recipes: Sequence[str],
    goal: Goal,
    *,
    measurement: Measurement | None = None,
    calibration: object | None = None,
    workers: int = 1,
    address: str | None = None,
    exhaustive: bool = False,
    prefer: Prefer = "latency",
    timer: Timer | None = None,
) -> SearchResult:
    """Expand ``recipes``, compress and compare every candidate on an engine (``workers`` > 1: a local Ray runtime,
    ``address``: a Ray cluster; shut down or left before timing), then time them side by side here and judge them.

    ``exhaustive`` runs every candidate (no skipping); ``timer`` replaces the side-by-side ``bench.measure`` run."""
    m = measurement or Measurement()
    candidates = grid.expand_all(list(recipes))
    if not candidates:
        raise UsageError("no recipes given: use -r 'PASS;PASS' (grids: -r 'prune-channels:ratio={0.3,0.5}') at least once")
    with make_engine(workers, address) as engine:
        evaluation = evaluate(model, candidates, goal, engine=engine, measurement=m, calibration=calibration, exhaustive=exhaustive)
    return conclude(evaluation, goal, prefer=prefer, timer=timer or functools.partial(compare.time_side_by_side, inputs=evaluation.inputs, rounds=m.rounds))


def evaluate(
    model: ir.Model,
    recipes: Sequence[str],
    goal: Goal,
    *,
    engine: Engine,
    measurement: Measurement,
    calibration: object | None = None,
    exhaustive: bool = False,
) -> Evaluation:
    """Run every recipe (already expanded) on ``engine``, a candidate only once every candidate it only adds loss to
    has run, skipping it when one of those missed the goal's quality (unless ``exhaustive``)."""
    built = [compare.parse_recipe(r) for r in recipes]  # every recipe refused before anything runs
    if measurement.labelled is None and goal.max_drop is not None:
        raise UsageError("a maximum accuracy drop needs labelled data to measure accuracy on (--labels FILE.npz)")
    inputs = trial.Inputs.of(model, measurement, calibration, engine.task_threads)
    shared = engine.share(inputs)
    first = engine.submit(trial.run, shared, "input", [])  # the input's own record: what drops are measured from
    if first.result().failure is not None:
        raise first.result().failure  # the input itself does not run on these inputs: the search cannot start
    reference = _candidate("input", first)
    shapes = [lossier.steps(passes) for passes in built]
    prune = goal.judges_quality and not exhaustive
    cheaper = [[j for j, other in enumerate(shapes) if prune and lossier.only_adds_loss(other, mine)] for mine in shapes]
    results: dict[int, Candidate] = {}
    pending: dict[Future, int] = {}
    waiting = list(range(len(built)))
    while waiting or pending:
        for i in [i for i in waiting if all(j in results for j in cheaper[i])]:
            waiting.remove(i)
            blocker = next((j for j in cheaper[i] if results[j].status == "ok" and goal.quality_misses(results[j])), None)
            if blocker is None:
                pending[engine.submit(trial.run, shared, recipes[i], built[i])] = i
            else:
                why = "; ".join(goal.quality_misses(results[blocker]))
                results[i] = Candidate(recipes[i], "skipped", f"only adds loss to {recipes[blocker]!r}, which misses the goal ({why})")
        if pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                results[index] = _candidate(recipes[index], future, reference)
    return Evaluation(reference, [results[i] for i in range(len(built))], inputs)


def conclude(evaluation: Evaluation, goal: Goal, *, timer: Timer, prefer: Prefer = "latency") -> SearchResult:
    """Time the input and every candidate that ran side by side (``timer``), judge them, mark the Pareto front, pick the best."""
    reference, ran = evaluation.reference, [c for c in evaluation.candidates if c.status == "ok"]
    latencies = timer([reference.model, *(c.model for c in ran)])
    reference.latency, reference.latency_ratio = latencies[0], 1.0
    for candidate, latency in zip(ran, latencies[1:]):
        candidate.latency, candidate.latency_ratio = latency, latency.median_ms / latencies[0].median_ms
        candidate.misses = goal.misses(candidate)
        candidate.meets_goal = not candidate.misses
    for candidate, on_front in zip(ran, compare.pareto_front([(c.size_bytes, c.latency.median_ms, -c.quality) for c in ran])):
        candidate.pareto = on_front
    rank = {"latency": lambda c: (c.latency_ratio, c.size_bytes, -c.quality),
            "size": lambda c: (c.size_bytes, c.latency_ratio, -c.quality),
            "quality": lambda c: (-c.quality, c.latency_ratio, c.size_bytes)}[prefer]
    best = min((c for c in ran if c.meets_goal), key=rank, default=None)
    return SearchResult(reference, evaluation.candidates, best, goal, prefer)


def _candidate(recipe: str, future: Future, reference: Candidate | None = None) -> Candidate:
    """The candidate a finished task made: ok with its final step's figures, or failed with one line (a defect's type too)."""
    exc = future.exception()
    if exc is not None:
        culprit = "Ray" if type(exc).__module__.startswith("ray.") else "a bug in onnxcompress"
        return Candidate(recipe, "failed", f"{culprit} ({type(exc).__name__}): {first_line(exc)}")
    done: trial.Trial = future.result()
    if done.failure is not None:
        return Candidate(recipe, "failed", done.reason, seconds=done.seconds)
    final = done.steps[-1]
    drop = None if reference is None or reference.accuracy is None or final.accuracy is None else reference.accuracy - final.accuracy
    return Candidate(recipe, "ok", None, final.size_bytes, final.params, final.fidelity, final.accuracy, drop,
                     seconds=done.seconds, steps=done.steps, model=done.model)
