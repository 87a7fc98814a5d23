"""Run passes in order and, between them, check, verify and measure — once, for every pass.

Each step: run the pass (timed), check the graph (``checks.structure_problems``, as ``verify``
does, and an ORT session with its optimizer disabled, so ORT cannot hide a malformed rewrite), compare outputs with
the input model's (a cached decoder's on its first step and on the token after it; an *exact* pass that changes
them stops the run with an error naming it), record
stats, benchmark side by side with the input, and roll the step back when it made latency worse
(``reject_slower``) or broke the accuracy budget (``max_drop``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from onnxcompress import bench, checks, fidelity, generation, io, progress, runtime, stats
from onnxcompress.calibration import as_reader
from onnxcompress.calibration.holdout import check_samples
from onnxcompress.defaults import LABELS_KEY, Metric
from onnxcompress.errors import CheckFailed, UsageError
from onnxcompress.passes import CompressionPass
from onnxcompress.provenance import Provenance
from onnxcompress.report import Report, StepRecord

if TYPE_CHECKING:
    import onnx

SLOWER_MARGIN = 0.02


def top1(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.0) -> float:
    """Share of samples whose largest score (one row of ``scores`` per sample) is at their label's index. One value
    per sample is a prediction of its own: an integer is a label as it is (an exported ``argmax``), a float is a
    binary classifier's score, class 1 above ``threshold``."""
    if scores.size == len(labels) and np.issubdtype(scores.dtype, np.integer):
        return float(np.mean(scores.reshape(len(labels)) == labels))
    if scores.size == len(labels):
        _check_classes(labels, 2, "one score per sample: a binary classifier")
        return float(np.mean((scores.reshape(len(labels)) > threshold).astype(np.int64) == labels))
    per_sample = scores.size // len(labels)
    _check_classes(labels, per_sample, f"{per_sample} scores per sample")
    return float(np.mean(np.argmax(scores.reshape(len(labels), -1), axis=1) == labels))


def _check_classes(labels: np.ndarray, classes: int, what: str) -> None:
    """A one-line ``UsageError`` when a label is no class the model's first output scores (accuracy would be
    computed, and mean nothing)."""
    if labels.min() < 0 or labels.max() >= classes:
        raise UsageError(f"--labels: labels run from {labels.min()} to {labels.max()}, but the model's first output has {what} "
                         f"(classes 0 to {classes - 1}); the labels must be class indices of the first output")


def binary_threshold(model: ir.Model) -> float:
    """Where a one-score binary classifier's first output turns to class 1: 0.5 for a probability (a Sigmoid's
    output, through casts and reshapes), 0 for a logit."""
    from onnxcompress.passes.values import behind_reshapes

    producer = behind_reshapes(model.graph.outputs[0]).producer() if model.graph.outputs else None
    return 0.5 if producer is not None and producer.op_type == "Sigmoid" else 0.0


METRICS: dict[str, Callable[..., float]] = {"top1": top1}


@dataclasses.dataclass
class LabelledData:
    """Inputs with class labels; accuracy is ``metric`` of the model's first output against ``labels``."""

    feeds: dict[str, np.ndarray]
    labels: np.ndarray
    metric: Metric = "top1"
    threshold: float = 0.0  # a one-score binary classifier's class boundary (``binary_threshold``)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], model: ir.Model, *, metric: Metric = "top1", source: str = "labels") -> LabelledData:
        """The model's inputs by input name and the class labels under ``LABELS_KEY`` (as read from an .npz),
        checked against ``model``; a one-line ``UsageError`` naming ``source`` otherwise."""
        if any(value.name == LABELS_KEY for value in model.graph.inputs):
            raise UsageError(f"{source}: the model has an input named {LABELS_KEY!r}, the name the class labels are stored under")
        labels = arrays.get(LABELS_KEY)
        if labels is None or labels.ndim != 1 or not len(labels) or not np.issubdtype(labels.dtype, np.integer):
            raise UsageError(f"{source}: needs a 1-D integer array {LABELS_KEY!r} (one class label per sample) beside the model's inputs")
        feeds = {name: array for name, array in arrays.items() if name != LABELS_KEY}
        try:
            io.check_input_names(feeds, model)
        except UsageError as exc:
            raise UsageError(f"{source}: {exc}") from None
        io.check_input_arrays({name: array.shape for name, array in feeds.items()}, model, source)
        wrong = {name: array.shape for name, array in feeds.items() if array.ndim == 0 or array.shape[0] != len(labels)}
        if wrong:
            raise UsageError(f"{source}: {len(labels)} labels, but inputs {wrong} do not have that many samples on their first axis")
        return cls(feeds, labels, metric, binary_threshold(model))

    def accuracy(self, model: ir.Model | io.Snapshot, threads: int | None = None) -> float:
        """``metric`` (top-1 accuracy) of ``model`` on this data (None threads: ``runtime.resolve_threads``)."""
        scores = next(iter(runtime.run(model, self.feeds, threads=threads).values()))
        return METRICS[self.metric](scores, self.labels, self.threshold)


@dataclasses.dataclass(frozen=True)
class Judge:
    """How every step's outputs are compared: at the input model's coarsest float precision (the exact-pass
    tolerance), leaving padding positions of the fixed inputs out of the relative error."""

    precision: np.dtype | None
    mask: np.ndarray | None

    def compare(self, reference: runtime.Feeds, candidate: runtime.Feeds) -> fidelity.Fidelity:
        """``fidelity.compare`` with this precision and mask."""
        return fidelity.compare(reference, candidate, precision=self.precision, mask=self.mask)


@dataclasses.dataclass(frozen=True)
class CheckedFeeds:
    """One set of inputs every step is run on, the input model's outputs there and how they are compared;
    ``suffix`` names its outputs in the record (`` (next token)`` for a cached decoder's generation step)."""

    feeds: runtime.Feeds
    expected: runtime.Feeds
    judge: Judge
    suffix: str = ""


def checked_feeds(model: ir.Model, reference: io.Snapshot, feeds: runtime.Feeds, threads: int) -> list[CheckedFeeds]:
    """What every step is checked on: ``feeds``, and beside them a cached decoder's next token or a merged decoder's
    other branch (``generation.expected_beside``)."""
    precision = fidelity.model_precision(model)
    checked = [CheckedFeeds(feeds, runtime.run(reference, feeds, threads=threads, optimization="disable"),
                            Judge(precision, fidelity.padding_mask(feeds)))]
    return checked + [CheckedFeeds(beside, expected, Judge(precision, fidelity.padding_mask(beside)), suffix)
                      for suffix, beside, expected in generation.expected_beside(model, feeds, threads, reference)]


def run_checked(state: io.Snapshot, checked: Sequence[CheckedFeeds], threads: int) -> list[runtime.Feeds]:
    """``state``'s outputs on each set of checked inputs (its optimizer disabled)."""
    return [runtime.run(state, c.feeds, threads=threads, optimization="disable") for c in checked]


def compare_checked(checked: Sequence[CheckedFeeds], reference: Sequence[runtime.Feeds], candidate: Sequence[runtime.Feeds]) -> fidelity.Fidelity:
    """Every output on every set of checked inputs, the later sets' outputs named with their suffix."""
    return fidelity.Fidelity([dataclasses.replace(o, name=o.name + c.suffix) for c, ref, got in zip(checked, reference, candidate)
                              for o in c.judge.compare(ref, got).outputs])


@dataclasses.dataclass
class PipelineResult:
    """The final model (of the kind ``onnxcompress.run`` was given: an ``onnx.ModelProto`` for one), the record of
    every step, and the final model as its last check serialized it (``io.save(model, path, snapshot=...)`` writes it)."""

    model: ir.Model | onnx.ModelProto
    report: Report
    snapshot: io.Snapshot | None = None


@dataclasses.dataclass
class Measurement:
    """What the pipeline measures and how: latency of the input and the final model side by side once, at the
    end (``benchmark``), or of every step beside the input (``each_step``, slower; ``reject_slower`` implies it)."""

    benchmark: bool = True
    each_step: bool = False
    threads: int = runtime.DEFAULT_THREADS
    batch: int = 1
    input_shapes: Mapping[str, tuple[int, ...]] | None = None
    feeds: Mapping[str, np.ndarray] | None = None
    labelled: LabelledData | None = None
    rounds: int = 5

    def inputs_for(self, model: ir.Model, calibration: object | None = None) -> dict[str, np.ndarray]:
        """The inputs ``model``'s outputs are checked and timed on: ``feeds``, else the first ``batch`` held-out samples
        of ``calibration`` (a reader: real data no step fitted on judges a lossy step where random values cannot), else
        synthetic inputs."""
        if self.feeds is not None:
            return dict(self.feeds)
        if calibration is not None:
            return check_samples(calibration, model, self.batch)[0]
        return runtime.synthetic_inputs(model, batch=self.batch, shapes=self.input_shapes)


class Pipeline:
    """An ordered list of passes plus the checks and measurements between them."""

    def __init__(
        self,
        passes: Sequence[CompressionPass],
        *,
        measurement: Measurement | None = None,
        reject_slower: bool = False,
        max_drop: float | None = None,
    ) -> None:
        self.passes = list(passes)
        self.measurement = measurement or Measurement()
        self.reject_slower = reject_slower
        self.max_drop = max_drop
        if max_drop is not None and not 0 <= max_drop <= 1:
            raise UsageError(f"max_drop must be in [0, 1], got {max_drop}")
        if max_drop is not None and self.measurement.labelled is None:
            raise UsageError("max_drop needs labelled data to measure accuracy on (--labels FILE.npz; Measurement.labelled)")

    def run(self, model: ir.Model, *, calibration: object | None = None) -> PipelineResult:
        """Apply every pass to ``model`` (in place) and return it with the report.

        ``calibration`` (any form ``calibration.as_reader`` takes: a reader, a path, a dict of arrays, an
        iterable of feed dicts, an ONNX Runtime ``CalibrationDataReader``) and the measurement's labelled
        data are handed to each pass for its run only; a pass that needs calibration data and gets none is
        refused before anything runs. ``onnxcompress.run`` leaves its input as it was.
        """
        provenance = Provenance.collect(model, self.passes, threads=self.measurement.threads)
        steps = list(self._steps(model, calibration))
        return PipelineResult(steps[-1][1], Report([record for record, _, _ in steps], provenance), steps[-1][2])

    def steps(self, model: ir.Model, *, calibration: object | None = None) -> Iterator[tuple[StepRecord, ir.Model]]:
        """The step loop every command shares (``run``, ``compare``, ``verify --bisect``): the input's record,
        then each pass's record with the model kept after it, as each step is checked and measured.

        Each model state is serialized once (``io.Snapshot``) and everything about it reads that: the checks,
        the ORT sessions, the size, a roll-back to it and the chain's input as teacher (copied only when a pass
        of the chain recovers). A pass that leaves the model byte for byte as the step before had it is not
        checked and run again: the same graph gives the same verdict and the same outputs.

        A caller may stop early, and must not change a model it is given: the next pass starts from that model
        and from its snapshot. A pass that fails a check raises from the step that ran it.
        """
        for record, kept, _ in self._steps(model, calibration):
            yield record, kept

    def _steps(self, model: ir.Model, calibration: object | None) -> Iterator[tuple[StepRecord, ir.Model, io.Snapshot]]:
        """``steps``, each with the snapshot of the model it keeps."""
        for pass_ in self.passes:
            pass_.check_calibration(calibration)
        if calibration is not None:
            calibration = as_reader(calibration, model)
        m = self.measurement
        feeds = m.inputs_for(model, calibration)
        reference = io.Snapshot(model)
        teacher = reference.copy() if any(pass_.recovers for pass_ in self.passes) else None
        checked = checked_feeds(model, reference, feeds, m.threads)
        expected = [c.expected for c in checked]
        baseline, _ = self._record("input", {}, "input", model, reference, 0.0, reference, checked, outputs=expected)
        baseline.notes = generation.unchecked_beside(model, feeds, [c.suffix for c in checked])
        yield baseline, model, reference
        before, last, kept = expected, baseline, reference
        for number, pass_ in enumerate(self.passes, 1):
            progress.log(f"step {number}/{len(self.passes)}: {pass_.name}")
            start = time.perf_counter()
            recovery_follows = any(later.recovers for later in self.passes[number:])
            with runtime.run_threads(m.threads):
                outcome = pass_.apply(model, calibration=calibration, labelled=m.labelled, teacher=teacher, recovery_follows=recovery_follows,
                                      serialized=kept.proto, inputs=feeds)
            model = outcome.model
            seconds = time.perf_counter() - start
            state = io.Snapshot(model)
            unchanged = state.same_as(kept)
            if not unchanged:
                self._check_structure(pass_, model, state, reference)
            previous = kept if self.reject_slower else None
            record, outputs = self._record(pass_.name, pass_.options(), "kept", model, state, seconds, reference, checked,
                                           previous, outputs=before if unchanged else None)
            record.notes, record.details = list(outcome.notes), {**outcome.details, **record.details}
            record.exact = pass_.exact
            self._check_exactness(pass_, compare_checked(checked, before, outputs))
            reason = self._rollback_reason(record, baseline)
            if reason:
                model = kept.copy()
                record.status = "rolled back"
                record.notes.append(f"rolled back: {reason}")
            else:
                before, last, kept = outputs, record, state
            yield record, model, kept
        if m.benchmark and not self._times_each_step and self.passes:
            self._time_input_and_final(baseline, last, reference, kept, feeds)

    def _record(self, name, options, status, model, state, seconds, reference, checked, previous=None,
                outputs=None) -> tuple[StepRecord, list[runtime.Feeds]]:
        """The step's record (fidelity vs the input) and the model's outputs on each of the ``checked`` inputs (run on
        ``state``, the model's snapshot, unless the caller knows them already: ``outputs``)."""
        m = self.measurement
        st = stats.model_stats(model, state.proto)
        got = outputs if outputs is not None else run_checked(state, checked, m.threads)
        feeds = checked[0].feeds
        record = StepRecord(
            pass_name=name,
            options=options,
            status=status,
            size_bytes=st.size_bytes,
            params=st.params,
            nodes=st.nodes,
            op_histogram=st.op_histogram,
            seconds=seconds,
            fidelity=compare_checked(checked, [c.expected for c in checked], got),
        )
        if m.labelled is not None:
            record.accuracy = m.labelled.accuracy(state, m.threads)
        if m.benchmark and self._times_each_step:
            compared = [reference] if status != "input" else []
            compared += [previous] if previous is not None else []
            latencies = self._latencies([*compared, state], feeds)
            record.latency = latencies[-1]
            record.speedup = latencies[0].median_ms / latencies[-1].median_ms
            if previous is not None:
                record.details["step_speedup"] = latencies[-2].median_ms / latencies[-1].median_ms
        return record, got

    @property
    def _times_each_step(self) -> bool:
        return self.measurement.each_step or self.reject_slower

    def _time_input_and_final(self, baseline: StepRecord, final: StepRecord, reference: io.Snapshot, model: io.Snapshot, feeds) -> None:
        """The input and the final model timed side by side once; the final step's record carries the speedup."""
        progress.log("timing the input and the final model side by side")
        baseline.latency, final.latency = self._latencies([reference, model], feeds)
        baseline.speedup, final.speedup = 1.0, baseline.latency.median_ms / final.latency.median_ms

    def _latencies(self, models: list[io.Snapshot], feeds) -> list[bench.Latency]:
        """Latency of each model, measured side by side in one run."""
        m = self.measurement
        sessions = bench.sessions(models, threads=m.threads)
        return bench.measure(sessions, [feeds] * len(sessions), batch=m.batch, threads=m.threads, rounds=m.rounds)

    @staticmethod
    def _check_structure(pass_: CompressionPass, model: ir.Model, state: io.Snapshot, reference: io.Snapshot) -> None:
        """Refuse a graph the checker rejects, unless the input already had the same problem (onnx's inference
        of a function op such as MeanVarianceNormalization without its default attributes fails on valid models)."""
        problems = _flat(checks.structure_problems(model, state.proto))
        if problems:
            problems = [p for p in problems if p not in _flat(checks.structure_problems(reference.copy(), reference.proto))]
        if problems:
            raise CheckFailed(f"pass {pass_.name!r} produced an invalid graph: {problems[0]}")

    @staticmethod
    def _check_exactness(pass_: CompressionPass, vs_previous_step: fidelity.Fidelity) -> None:
        """An exact pass must keep the outputs of the step before it (earlier lossy steps may have moved them)."""
        worst = vs_previous_step.worst()
        if pass_.exact and worst is not None and not worst.exact:
            raise CheckFailed(
                f"exact pass {pass_.name!r} changed output {worst.name!r}: "
                f"max abs error {worst.max_abs_err:.3g} > {worst.tolerance:.3g} x scale {worst.scale:.3g}"
            )

    def _rollback_reason(self, record: StepRecord, baseline: StepRecord) -> str | None:
        step_speedup = record.details.get("step_speedup")
        if self.reject_slower and step_speedup is not None and step_speedup < 1.0 - SLOWER_MARGIN:
            return f"made latency worse ({step_speedup:.2f}x the previous step's speed)"
        if self.max_drop is not None and record.accuracy is not None and baseline.accuracy is not None:
            drop = baseline.accuracy - record.accuracy
            if drop > self.max_drop:
                return f"accuracy dropped {drop:.4f} > max_drop {self.max_drop}"
        return None


def _flat(problems: Mapping[str, list[str]]) -> list[str]:
    return [problem for found in problems.values() for problem in found]
