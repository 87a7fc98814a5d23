"""Verify a candidate model against a reference model or a golden file: structure, then numbers.

Checks run in order: onnx checker + strict shape inference (``checks.graph_problems``), our
per-op channel rules (``shape_rules``), and a session at ``ORT_DISABLE_ALL``; then every output is
compared with ``atol``/``rtol`` (numpy's ``allclose`` rule), cosine, SNR and, for classifier-like
outputs, top-1/top-k agreement, along with the smallest tolerance that would have passed. What
decides pass or fail is the tolerance rule, or the fidelity ``Gates`` when any is given (see there).

Unlike ORT's ``compare_bert_results`` (always exits 0) and Polygraphy (no JUnit, and uniform
[0, 1] inputs that fail calibrated models falsely), inputs are synthesized from the model's
signature or sampled inside calibrated ranges, and the result maps to exit codes for CI.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import onnx_ir as ir

from onnxcompress import checks, fidelity, generation, io, runtime
from onnxcompress.defaults import DEFAULT_ATOL, DEFAULT_RTOL
from onnxcompress.errors import UsageError

if TYPE_CHECKING:
    import onnxruntime as ort

TOP_K = 5
INPUT_KIND, OUTPUT_KIND = "input", "output"  # a golden file's arrays: input:NAME, output (next token):NAME
GOLDEN_SUFFIXES = ("", generation.NEXT_TOKEN, generation.NO_CACHE_BRANCH)
Feeds = dict[str, np.ndarray]
T = TypeVar("T")


@dataclasses.dataclass
class CheckResult:
    """One structural check: its name, whether it passed, and the first problem when it did not."""

    name: str
    passed: bool
    detail: str = ""


@dataclasses.dataclass
class OutputResult:
    """How one output compares: the numbers, where it is worst, and the tolerance that would pass."""

    name: str
    passed: bool
    max_abs_err: float
    cosine: float
    snr_db: float
    worst_index: tuple[int, ...] | None
    min_atol: float  # smallest atol that passes at the given rtol
    min_rtol: float  # smallest rtol that passes at the given atol
    top1_agreement: float | None = None
    topk_agreement: float | None = None
    detail: str = ""
    missed_gates: list[str] = dataclasses.field(default_factory=list)  # e.g. "cosine 0.9931 < 0.999"


@dataclasses.dataclass(frozen=True)
class Gates:
    """Fidelity thresholds per output, each optional (None: not gated): what "close enough" means for a lossy model.

    With no gate given, an output passes on ``|cand - ref| <= atol + rtol * |ref|`` exactly as without
    gates. With one or more given, it passes when it meets every gate given; atol/rtol then only report,
    unless they are given explicitly too (``rtol``/``atol`` not None), in which case they gate as well.
    ``min_topk_agreement`` is the mean overlap of the ``top_k`` best classes per row (``top_k=1``: top-1
    agreement) and applies to classifier-like outputs (``[batch, classes]`` floats) only; for any other
    output it is reported as not applicable in the output's detail, never counted as met. An integer output
    (labels, indices) is categorical (``fidelity``): its cosine is the share of its values unchanged, which is
    also reported as its top-1 agreement.
    """

    min_cosine: float | None = None
    min_snr_db: float | None = None
    min_topk_agreement: float | None = None
    top_k: int = TOP_K

    def __post_init__(self) -> None:
        """Refuse thresholds no output could meet or fail (one-line ``UsageError``)."""
        _check_range("min_cosine (--min-cosine)", self.min_cosine, -1.0, 1.0)
        _check_range("min_snr_db (--min-snr)", self.min_snr_db, -np.inf, np.inf)
        _check_range("min_topk_agreement (--min-topk-agreement)", self.min_topk_agreement, 0.0, 1.0)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise UsageError(f"top_k (--top-k) must be a whole number of at least 1, got {self.top_k}")

    @property
    def given(self) -> bool:
        """At least one fidelity threshold is set."""
        return any(v is not None for v in (self.min_cosine, self.min_snr_db, self.min_topk_agreement))

    def tolerance_gates(self, rtol: float | None, atol: float | None) -> bool:
        """Whether atol/rtol decide: always without fidelity gates, with them only when given explicitly."""
        return not self.given or rtol is not None or atol is not None

    def missed(self, output: OutputResult) -> list[str]:
        """One ``NAME VALUE < THRESHOLD`` line per gate ``output`` does not meet (NaN meets none)."""
        measured = [
            ("cosine", output.cosine, self.min_cosine, ""),
            ("SNR", output.snr_db, self.min_snr_db, " dB"),
            (f"top-{self.top_k} agreement", output.topk_agreement, self.min_topk_agreement, ""),
        ]
        return [f"{name} {_below(value, threshold)}{unit} < {_number(threshold)}{unit}" for name, value, threshold, unit in measured
                if threshold is not None and value is not None and not value >= threshold]

    def not_applicable(self, output: OutputResult) -> list[str]:
        """The gates ``output`` cannot be measured on (top-k on an output that is not classifier scores)."""
        if self.min_topk_agreement is not None and output.topk_agreement is None:
            return [f"top-{self.top_k} agreement gate not applicable (not [batch, classes] float scores)"]
        return []

    def describe(self) -> str:
        """The thresholds given, e.g. ``cosine >= 0.99, top-5 agreement >= 0.9``."""
        given = [("cosine", self.min_cosine, ""), ("SNR", self.min_snr_db, " dB"),
                 (f"top-{self.top_k} agreement", self.min_topk_agreement, "")]
        return ", ".join(f"{name} >= {_number(value)}{unit}" for name, value, unit in given if value is not None)


@dataclasses.dataclass
class VerifyResult:
    """Everything ``verify`` found; ``passed`` is what the exit code reports."""

    checks: list[CheckResult]
    outputs: list[OutputResult]
    rtol: float
    atol: float
    gates: Gates = dataclasses.field(default_factory=Gates)
    tolerance_gates: bool = True  # whether atol/rtol decided, or only reported (``Gates``)

    @classmethod
    def judged(
        cls,
        checks: list[CheckResult],
        outputs: list[OutputResult],
        *,
        rtol: float | None = None,
        atol: float | None = None,
        gates: Gates | None = None,
    ) -> VerifyResult:
        """The result of ``checks`` and ``outputs``, recording the criteria the outputs were judged by (defaults filled in)."""
        gates = gates or Gates()
        return cls(checks, outputs, _or(rtol, DEFAULT_RTOL), _or(atol, DEFAULT_ATOL), gates, gates.tolerance_gates(rtol, atol))

    @property
    def passed(self) -> bool:
        """Every check and every output passed."""
        return all(c.passed for c in self.checks) and all(o.passed for o in self.outputs)

    def failures(self) -> list[str]:
        """One line per failed check or output."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed] + [
            f"output {o.name!r}: {o.detail}" for o in self.outputs if not o.passed
        ]

    def worst_output(self) -> OutputResult | None:
        """The output that needs the largest absolute tolerance."""
        return max(self.outputs, key=lambda o: (not o.passed, o.min_atol), default=None)

    def criteria(self) -> str:
        """What decided pass or fail, in one line (``rtol=0.001 atol=0.0001``, the gates, or both)."""
        tolerance = f"rtol={self.rtol:g} atol={self.atol:g}"
        if not self.gates.given:
            return tolerance
        return self.gates.describe() + (f", {tolerance}" if self.tolerance_gates else f"; {tolerance} only reported")

    def to_dict(self) -> dict:
        """JSON-ready form (the ``--json`` file)."""
        return {
            "passed": self.passed,
            "rtol": self.rtol,
            "atol": self.atol,
            "tolerance_gates": self.tolerance_gates,
            "gates": dataclasses.asdict(self.gates),
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "outputs": [_jsonable(dataclasses.asdict(o)) for o in self.outputs],
        }


def verify_models(
    reference: ir.Model,
    candidate: ir.Model,
    inputs: Mapping[str, np.ndarray] | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gates: Gates | None = None,
    threads: int = runtime.DEFAULT_THREADS,
) -> VerifyResult:
    """Check ``candidate``'s structure and compare its outputs with ``reference``'s on ``inputs``.

    Inputs default to synthetic ones from the reference's signature. The reference must run
    (else ``UsageError``); anything wrong with the candidate is a failed check in the result.
    ``rtol``/``atol`` default to ``DEFAULT_RTOL``/``DEFAULT_ATOL``; how they combine with ``gates``: ``Gates``.
    """
    feeds = dict(inputs) if inputs is not None else runtime.synthetic_inputs(reference)
    check_feed_names(reference, feeds)
    expected = runtime.run(reference, feeds, threads=threads, optimization="disable")
    beside = generation.expected_beside(reference, feeds, threads)
    return verify_against(candidate, feeds, expected, rtol=rtol, atol=atol, gates=gates, threads=threads, beside=beside)


def verify_against(
    model: ir.Model,
    inputs: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gates: Gates | None = None,
    threads: int = runtime.DEFAULT_THREADS,
    state: io.Snapshot | None = None,
    beside: Sequence[tuple[str, Feeds, Feeds]] = (),
) -> VerifyResult:
    """Check ``model``'s structure, run it on ``inputs`` and compare with ``expected`` (a golden).

    Every output of ``model`` must be in ``expected``: one that is not fails (it would go unchecked). Float inputs are
    cast to the float types ``model`` declares (``runtime.at_declared_precision``: a float16 model against its original).
    Tolerances and ``gates`` as in ``verify_models``. ``state``: ``model``'s snapshot when the caller has it
    (``io.load_with_snapshot``), what the checks and the session read instead of serializing ``model`` again.
    ``beside``: a cached decoder's next token or a merged decoder's other branch, each its suffix, feeds and expected
    outputs (``generation.expected_beside``), compared the same way, their outputs named with the suffix.
    """
    check_feed_names(model, inputs)
    results, session = _checked_session(model, threads, state)
    outputs = _compared_outputs(model, session, inputs, expected, results, rtol=rtol, atol=atol, gates=gates)
    unchecked = "no expected values (missing from the golden file or the reference outputs)"
    outputs += [_failed_output(v.name, unchecked) for v in model.graph.outputs if v.name not in expected]
    for suffix, feeds, wanted in beside:
        later = _compared_outputs(model, session, feeds, wanted, results, rtol=rtol, atol=atol, gates=gates, run_check=f"run{suffix}")
        outputs += [dataclasses.replace(o, name=o.name + suffix) for o in later]
    return VerifyResult.judged(results, outputs, rtol=rtol, atol=atol, gates=gates)


def _compared_outputs(model: ir.Model, session: ort.InferenceSession | None, inputs: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                      results: list[CheckResult], *, rtol: float | None, atol: float | None, gates: Gates | None,
                      run_check: str = "run (ORT_DISABLE_ALL)") -> list[OutputResult]:
    """Each expected output compared with ``model``'s on ``inputs`` (cast to its declared float types); a run that
    fails is a failed ``run_check`` in ``results`` and leaves every output missing."""
    actual: Feeds = {}
    if session is not None:
        try:
            actual = runtime.run(session, runtime.at_declared_precision(model, inputs))
        except UsageError as exc:
            results.append(CheckResult(run_check, False, str(exc)))
    return [compare_output(name, ref, actual.get(name), rtol=rtol, atol=atol, gates=gates) for name, ref in expected.items()]


def structure_checks(model: ir.Model) -> list[CheckResult]:
    """Checker + strict inference, channel rules, and an ORT session with its optimizer disabled."""
    return _checked_session(model)[0]


def _checked_session(model: ir.Model, threads: int = runtime.DEFAULT_THREADS,
                     state: io.Snapshot | None = None) -> tuple[list[CheckResult], ort.InferenceSession | None]:
    """``structure_checks`` on one serialization of ``model`` (``state``, or made here), and the session it made (None when it could not)."""
    state = state or io.Snapshot(model)
    results = [CheckResult(name, not problems, "; ".join(problems)) for name, problems in checks.structure_problems(model, state.proto).items()]
    try:
        session = runtime.session(state, threads=threads, optimization="disable")
        results.append(CheckResult("ORT session (ORT_DISABLE_ALL)", True))
    except UsageError as exc:
        session = None
        results.append(CheckResult("ORT session (ORT_DISABLE_ALL)", False, str(exc)))
    return results, session


def compare_output(
    name: str,
    ref: np.ndarray,
    cand: np.ndarray | None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gates: Gates | None = None,
) -> OutputResult:
    """Compare one output under ``|cand - ref| <= atol + rtol * |ref|`` (NaN equals NaN) and ``gates`` (see ``Gates``)."""
    gates = gates or Gates()
    tolerance_gates = gates.tolerance_gates(rtol, atol)
    rtol, atol = _or(rtol, DEFAULT_RTOL), _or(atol, DEFAULT_ATOL)
    ref = np.asarray(ref)
    base = fidelity.compare({name: ref}, {name: cand} if cand is not None else {}).outputs[0]
    if not base.shape_matches:
        got = "missing" if cand is None else f"shape {tuple(np.shape(cand))}"
        return _failed_output(name, f"{got}, expected shape {ref.shape}")
    cand = np.asarray(cand)
    if not np.issubdtype(ref.dtype, np.number) or ref.dtype == np.bool_:
        equal = bool(np.array_equal(ref, cand))
        return OutputResult(name, equal, base.max_abs_err, base.cosine, float("inf") if equal else float("-inf"),
                            None, 0.0 if equal else float("inf"), 0.0 if equal else float("inf"),
                            detail="" if equal else "values differ")
    err, magnitude = _errors(ref, cand)
    excess = err - (atol + rtol * magnitude)
    within = bool(excess.size == 0 or excess.max() <= 0)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), ref.shape)) if excess.size else None
    result = OutputResult(
        name, within, float(err.max(initial=0.0)), base.cosine, _snr_db(ref, cand), index,
        min_atol=float(np.max(err - rtol * magnitude, initial=0.0)),
        min_rtol=_min_rtol(err, magnitude, atol),
    )
    if _classifier_like(ref):
        result.top1_agreement, result.topk_agreement = _topk_agreement(ref, cand, gates.top_k)
    elif base.changed is not None:  # labels: their share unchanged is the top-1 agreement of the scores they came from
        result.top1_agreement = 1.0 - base.changed
    result.missed_gates = gates.missed(result)
    result.passed = (within or not tolerance_gates) and not result.missed_gates
    problems = list(result.missed_gates)
    if tolerance_gates and not within:
        problems.append(
            f"max abs error {result.max_abs_err:.4g} at index {list(index)} "
            f"(reference {_item(ref[index])}, candidate {_item(cand[index])}); "
            f"would pass with atol>={result.min_atol:.4g} (at rtol {rtol:g}) or rtol>={result.min_rtol:.4g} (at atol {atol:g})"
        )
    result.detail = "; ".join(problems + gates.not_applicable(result))
    return result


def synthesize_inputs(
    model: ir.Model,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    *,
    batch: int = 1,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
) -> Feeds:
    """In-distribution inputs: the signature's synthetic inputs, float ones resampled inside ``ranges``.

    Calibrated ranges keep a quantized model inside the values it was calibrated for, so a
    correct model is not failed by inputs it was never meant to see.
    """
    feeds = runtime.synthetic_inputs(model, batch=batch, shapes=shapes, seed=seed)
    rng = np.random.default_rng(seed)
    for name, array in feeds.items():
        if name in (ranges or {}) and np.issubdtype(array.dtype, np.floating):
            lo, hi = ranges[name]
            feeds[name] = rng.uniform(lo, hi, size=array.shape).astype(array.dtype)
    return feeds


def check_feed_names(model: ir.Model, feeds: Mapping[str, np.ndarray]) -> None:
    """Raise a ``UsageError`` unless ``feeds`` name exactly the inputs ``model`` needs (``io.check_input_names``)."""
    io.check_input_names(feeds, model)


def save_golden(
    path: str | os.PathLike,
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    *,
    beside: Sequence[tuple[str, Feeds, Feeds]] = (),
    models: Iterable[ir.Model] = (),
) -> None:
    """Store the inputs used and the reference outputs in one .npz (``input:NAME``/``output:NAME``), and each run
    ``beside`` them (a cached decoder's next token: ``input (next token):NAME``/``output (next token):NAME``).

    Written with ``io.save_arrays``, so never over the files ``models`` were loaded from.
    """
    arrays: dict[str, np.ndarray] = {}
    for suffix, feeds, expected in [("", inputs, outputs), *beside]:
        arrays |= {f"{INPUT_KIND}{suffix}:{k}": np.asarray(v) for k, v in feeds.items()}
        arrays |= {f"{OUTPUT_KIND}{suffix}:{k}": np.asarray(v) for k, v in expected.items()}
    io.save_arrays(path, arrays, inputs=models)


def load_golden(path: str | os.PathLike, model: ir.Model | None = None) -> tuple[Feeds, Feeds]:
    """The inputs and expected outputs a golden file holds (``read_golden`` also gives the runs beside them)."""
    inputs, outputs, _ = read_golden(path, model)
    return inputs, outputs


def read_golden(path: str | os.PathLike, model: ir.Model | None = None) -> tuple[Feeds, Feeds, list[tuple[str, Feeds, Feeds]]]:
    """The inputs and expected outputs a golden file holds, and the runs beside them (each suffix, its inputs and
    expected outputs: a cached decoder's next token), the file read once.

    The file's headers are checked before anything is inflated (``io.array_headers``); with
    ``model``, its inputs must be the model's (names and ranks) and every output one of the model's.
    An output of the model the file lacks is not an error here: ``verify_against`` fails it.
    """
    headers = io.array_headers(path)
    inputs, outputs = _split_golden(headers)
    if not outputs or any(_golden_kind(key) is None for key in headers):
        raise UsageError(f"{path}: not a golden file (expected only input:NAME and output:NAME arrays)")
    if model is not None:
        io.check_input_arrays({name: header.shape for name, header in inputs.items()}, model, path)
        names = [v.name for v in model.graph.outputs]
        unknown = sorted(set(outputs) - set(names))
        if unknown:
            raise UsageError(f"{path}: outputs {unknown} are not outputs of the model; it has {names}")
    arrays = io.load_arrays(path)
    suffixes = dict.fromkeys(kind[1] for key in arrays if (kind := _golden_kind(key)) is not None and kind[1])
    return (*_split_golden(arrays), [(suffix, *_split_golden(arrays, suffix)) for suffix in suffixes])


def _golden_kind(key: str) -> tuple[str, str] | None:
    """``("input", " (next token)")`` for ``input (next token):NAME``; None for a key of no golden kind."""
    head, colon, _ = key.partition(":")
    for kind in (INPUT_KIND, OUTPUT_KIND):
        if colon and head.startswith(kind) and head[len(kind):] in GOLDEN_SUFFIXES:
            return kind, head[len(kind):]
    return None


def _split_golden(arrays: Mapping[str, T], suffix: str = "") -> tuple[dict[str, T], dict[str, T]]:
    """``input{suffix}:NAME`` and ``output{suffix}:NAME`` entries, each by bare name."""
    inputs, outputs = f"{INPUT_KIND}{suffix}:", f"{OUTPUT_KIND}{suffix}:"
    return (
        {k[len(inputs):]: v for k, v in arrays.items() if k.startswith(inputs)},
        {k[len(outputs):]: v for k, v in arrays.items() if k.startswith(outputs)},
    )


def _failed_output(name: str, detail: str) -> OutputResult:
    """An output that could not be compared (missing, wrong shape, nothing to compare with): failed, worst numbers."""
    return OutputResult(name, False, float("inf"), 0.0, float("-inf"), None, float("inf"), float("inf"), detail=detail)


def _errors(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise absolute error (0 where both agree, inf where non-finite values differ) and |ref|."""
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    same = (r == c) | (np.isnan(r) & np.isnan(c))
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(r - c))
    err = np.nan_to_num(err, nan=np.inf, posinf=np.inf)
    return err, np.where(np.isfinite(r), np.abs(r), 0.0)


def _min_rtol(err: np.ndarray, magnitude: np.ndarray, atol: float) -> float:
    over = err > atol
    if not over.any():
        return 0.0
    if (magnitude[over] == 0).any():
        return float("inf")
    return float(np.max((err[over] - atol) / magnitude[over]))


def _snr_db(ref: np.ndarray, cand: np.ndarray) -> float:
    """Signal-to-noise ratio of the candidate in dB (inf when identical)."""
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    noise = float(np.sum((r - c) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0:
        return float("inf")
    if not np.isfinite(noise) or signal == 0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def _classifier_like(ref: np.ndarray) -> bool:
    """[batch, classes] float scores with at least two classes."""
    return ref.ndim == 2 and ref.shape[1] >= 2 and np.issubdtype(ref.dtype, np.floating)


def _topk_agreement(ref: np.ndarray, cand: np.ndarray, top_k: int = TOP_K) -> tuple[float, float]:
    """Share of rows with the same arg-max, and mean overlap of the top-k classes (k at most the class count)."""
    k = min(top_k, ref.shape[1])
    top1 = float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1)))
    ref_top = np.argsort(-ref, axis=1)[:, :k]
    cand_top = np.argsort(-cand, axis=1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ref_top, cand_top)]
    return top1, float(np.mean(overlap))


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _number(value: float) -> str:
    """A threshold as the user wrote it (shortest round-trip form, no trailing ``.0``)."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _below(value: float, threshold: float) -> str:
    """``value`` with the fewest digits (at least 4) that still show it below ``threshold``."""
    for digits in range(4, 18):
        text = f"{value:.{digits}g}"
        if float(text) < threshold:
            return text
    return repr(float(value))


def _check_range(name: str, value: float | None, low: float, high: float) -> None:
    """A one-line ``UsageError`` unless ``value`` is None or a number within [low, high]."""
    if value is not None and not (isinstance(value, (int, float)) and low <= value <= high and not np.isnan(value)):
        bounds = "a number" if np.isinf(low) and np.isinf(high) else f"in [{low:g}, {high:g}]"
        raise UsageError(f"{name} must be {bounds}, got {value}")


def _item(value: np.generic) -> str:
    return f"{value.item():.6g}" if isinstance(value.item(), float) else str(value.item())


def _jsonable(record: dict) -> dict:
    """Non-finite floats as strings (JSON has no inf/NaN), tuples as lists."""
    out = {}
    for key, value in record.items():
        if isinstance(value, float) and not np.isfinite(value):
            value = str(value)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
