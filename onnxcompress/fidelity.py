"""How close a candidate's outputs are to a reference's: the numbers every step records.

Exactness: the largest absolute error against the output's scale, within 1e-4 × scale for fp32
outputs, and within ``EXACT_EPSILONS`` epsilons × scale for coarser floats (fp16, bf16: one rounding
of theirs is larger than 1e-4), judged at the coarser of the output's type and the model's
(``model_precision``).

Loss: the cosine of each whole output, and its *slice error* (``SliceError``): the relative error
``rms(candidate − reference)`` over the reference's spread, of the whole output and, along every
axis but the batch, of each slice with its own spread, then the root mean square over the axis's
slices; the largest of these is kept, with the axis and its worst slice. A whole-output number hides
a collapse in a small part of an output: in a detector's ``[batch, 4 + classes, anchors]`` output the
box coordinates, in the hundreds, dominate the tensor, so the class scores near 0.1 can collapse
while the cosine stays above 0.999; judged against its own spread, each collapsed class row has an
error near 1. Cosine or correlation per slice would not do: cosine ignores an offset (a collapsed
row of all-positive scores keeps a cosine near 1), correlation an offset and a scale. The mean over
an axis's slices, not their maximum, is kept because the maximum of many slices, each estimated on a
few samples, grows with their number; a collapse of most slices, or of one among a few dozen, still
shows.

A slice's spread is its standard deviation, floored at ``SPREAD_FLOOR`` × its own magnitude (root
mean square) and × a typical slice's magnitude (the median over the slices): a slice that barely
varies around a large value, or that is dead, is judged by its error against those magnitudes,
not against a spread near zero that any rounding exceeds. Positions an attention mask among the
inputs marks as padding (``padding_mask``) are left out of the relative error: what a model
computes there is never read, and INT8 moves it far more than the real positions.

Categorical outputs (integers and booleans: an ArgMax's labels, TopK's indices, a thresholded mask)
are judged by how many of their values changed (``OutputFidelity.changed``), not as quantities: label
3 read as 4 is as wrong as 3 read as 9, which an error against the labels' spread would not say.
Their cosine is the share of values unchanged, and their slice error 0 (the share judges them).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxcompress import walk

EXACT_RELATIVE_TOLERANCE = 1e-4
EXACT_EPSILONS = 4  # an exact rewrite may round an fp16/bf16 result differently, by a few epsilons
SPREAD_FLOOR = 0.1
MIN_SLICE_ELEMENTS = 8  # fewer values give no usable spread: an axis whose slices are smaller is not sliced


@dataclasses.dataclass(frozen=True)
class SliceError:
    """The slice error of one output: of the slices along ``axis`` (root mean square; ``index`` the worst one),
    or of the whole output (``axis`` None)."""

    error: float
    axis: int | None = None
    index: int | None = None

    def where(self) -> str:
        """``whole`` or ``axis 1 index 34``."""
        return "whole" if self.axis is None else f"axis {self.axis} index {self.index}"

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"error": self.error, "axis": self.axis, "index": self.index}


SAME = SliceError(0.0)
BROKEN = SliceError(float("inf"))


@dataclasses.dataclass
class OutputFidelity:
    """Agreement of one output: max abs error, the reference's scale, cosine similarity, the worst slice's
    relative error, and the relative tolerance an exact pass has at the output's precision."""

    name: str
    max_abs_err: float
    scale: float
    cosine: float
    shape_matches: bool
    worst_slice: SliceError = SAME
    tolerance: float = EXACT_RELATIVE_TOLERANCE
    changed: float | None = None  # a categorical output's share of values that differ from the reference's

    @property
    def exact(self) -> bool:
        """Within the exact-pass tolerance: max abs error ≤ ``tolerance`` × output scale."""
        return self.shape_matches and self.max_abs_err <= self.tolerance * self.scale

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"name": self.name, "max_abs_err": self.max_abs_err, "cosine": self.cosine, "exact": self.exact,
                "slice_error": self.worst_slice.error, "changed": self.changed}


@dataclasses.dataclass
class Fidelity:
    """Agreement over all outputs; the summary fields are the worst case."""

    outputs: list[OutputFidelity]

    @property
    def max_abs_err(self) -> float:
        """Largest absolute error over all outputs."""
        return max((o.max_abs_err for o in self.outputs), default=0.0)

    @property
    def cosine(self) -> float:
        """Smallest cosine similarity over all outputs."""
        return min((o.cosine for o in self.outputs), default=1.0)

    @property
    def slice_error(self) -> float:
        """Largest slice error of any output (0 when the outputs are the same)."""
        return max((o.worst_slice.error for o in self.outputs), default=0.0)

    @property
    def changed(self) -> float:
        """Largest share of changed values of any categorical output (0 when there is none)."""
        return max((o.changed for o in self.outputs if o.changed is not None), default=0.0)

    def most_changed(self) -> str:
        """The categorical output with the largest share of changed values, quoted (empty when there is none)."""
        worst = max((o for o in self.outputs if o.changed is not None), key=lambda o: o.changed, default=None)
        return "" if worst is None else repr(worst.name)

    @property
    def exact(self) -> bool:
        """Every output within the exact-pass tolerance."""
        return all(o.exact for o in self.outputs)

    def worst(self) -> OutputFidelity | None:
        """The output furthest from its exact-pass tolerance."""
        return max(self.outputs, key=lambda o: (not o.shape_matches, o.max_abs_err / (o.tolerance * o.scale)), default=None)

    def worst_slice(self) -> OutputFidelity | None:
        """The output whose worst slice has the largest relative error."""
        return max(self.outputs, key=lambda o: o.worst_slice.error, default=None)

    def where(self) -> str:
        """Where the largest relative error is: ``'output0' axis 1 index 34`` (empty when there is none)."""
        worst = self.worst_slice()
        return "" if worst is None or not worst.worst_slice.error else f"{worst.name!r} {worst.worst_slice.where()}"

    def to_dict(self) -> dict:
        """JSON-ready: the worst case, then each output (a cached decoder's next token among them) on its own."""
        worst = self.worst_slice()
        return {
            "max_abs_err": self.max_abs_err,
            "cosine": self.cosine,
            "exact": self.exact,
            "worst_slice": None if worst is None else {"output": worst.name, **worst.worst_slice.to_dict()},
            "changed": self.changed,
            "outputs": [o.to_dict() for o in self.outputs],
        }


def compare(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    precision: np.dtype | None = None,
    mask: np.ndarray | None = None,
) -> Fidelity:
    """Compare outputs by name (outputs missing from the candidate count as shape mismatches).

    ``precision``: the model's coarsest float type (``model_precision``), which sets the exact-pass
    tolerance when it is coarser than an output's own. ``mask``: padding positions (``padding_mask``)
    to leave out of the relative error, for outputs whose leading axes are the mask's. An empty optional
    output (None) is matched only by an empty optional; a sequence output (a list, its tensors of any
    shapes) is judged by its worst element.
    """
    return Fidelity([_compare_value(name, ref, candidate, precision, mask) for name, ref in reference.items()])


def _compare_value(name: str, ref: object, candidate: Mapping[str, object], precision: np.dtype | None, mask: np.ndarray | None) -> OutputFidelity:
    """One output of any ONNX kind: an empty optional, a sequence or a tensor."""
    if ref is None:
        return _equality(name, name in candidate and candidate[name] is None)
    cand = candidate.get(name)
    if not isinstance(ref, list):
        return _compare_one(name, np.asarray(ref), cand, precision, mask)
    if not isinstance(cand, list) or len(cand) != len(ref):
        return OutputFidelity(name, float("inf"), 1.0, 0.0, False, BROKEN)
    elements = Fidelity([_compare_one(name, np.asarray(r), c, precision, mask) for r, c in zip(ref, cand)])
    return elements.worst() or _equality(name, True)


def exact_tolerance(*dtypes: np.dtype | None) -> float:
    """The exact-pass relative tolerance for values of the coarsest of ``dtypes``: 1e-4, or ``EXACT_EPSILONS``
    epsilons of a float type coarser than that (fp16, bf16)."""
    return max([EXACT_RELATIVE_TOLERANCE, *(EXACT_EPSILONS * _epsilon(d) for d in dtypes if d is not None)])


def model_precision(model: ir.Model) -> np.dtype | None:
    """The coarsest floating-point type among the model's inputs, outputs, initializers, typed values and
    ``Cast`` targets (an fp16 section between fp32 inputs and outputs counts), if any."""
    graph = model.graph
    nodes = list(walk.nodes(graph))
    values = [*graph.inputs, *graph.outputs, *graph.initializers.values(), *(v for node in nodes for v in node.outputs)]
    dtypes = {value.dtype for value in values if value.dtype is not None}
    dtypes |= {ir.DataType(node.attributes["to"].as_int()) for node in nodes if node.op_type == "Cast" and "to" in node.attributes}
    floats = [_numpy(dtype) for dtype in dtypes if dtype.is_floating_point()]
    return max((f for f in floats if _epsilon(f)), key=_epsilon, default=None)


def padding_mask(feeds: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The padding positions of a text model's feeds: the first 2-D integer or boolean input named like
    ``attention_mask`` holding only 0s and 1s, some of them 0, as a boolean ``[batch, sequence]`` array
    (True where real); None when no input is one."""
    for name, array in feeds.items():
        if not isinstance(array, np.ndarray):
            continue  # a sequence, optional or map input
        if "mask" in name.lower() and array.ndim == 2 and array.dtype.kind in "biu" and np.isin(array, (0, 1)).all():
            return array.astype(bool) if not array.all() else None
    return None


def unpadded(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``array`` without its padding positions (``[real positions, ...]``) when its leading axes are ``mask``'s."""
    if mask is None or array.shape[: mask.ndim] != mask.shape:
        return array
    return array[mask]


def _epsilon(dtype: np.dtype | None) -> float:
    """Machine epsilon of a floating-point numpy type (ml_dtypes' bfloat16 too); 0 for any other type."""
    try:
        return float(np.finfo(dtype).eps)
    except (TypeError, ValueError):
        return 0.0


def _numpy(dtype: ir.DataType) -> np.dtype | None:
    try:
        return dtype.numpy()
    except (TypeError, ValueError):
        return None


def _compare_one(name: str, ref: np.ndarray, cand: np.ndarray | None, precision: np.dtype | None, mask: np.ndarray | None) -> OutputFidelity:
    if cand is None or isinstance(cand, list) or np.shape(cand) != ref.shape:
        return OutputFidelity(name, float("inf"), 1.0, 0.0, False, BROKEN)
    cand = np.asarray(cand)
    tolerance = exact_tolerance(ref.dtype, precision)
    if is_categorical(ref.dtype):
        return _categorical(name, ref, cand, mask, tolerance)
    if not (np.issubdtype(ref.dtype, np.number) or _epsilon(ref.dtype)):
        return _equality(name, bool(np.array_equal(ref, cand)), tolerance)
    r = ref.astype(np.float64)
    c = cand.astype(np.float64)
    finite = np.isfinite(r) & np.isfinite(c)
    same_nonfinite = bool(np.all((r == c) | (np.isnan(r) & np.isnan(c)) | finite))
    err = float(np.max(np.abs(r[finite] - c[finite]), initial=0.0)) if same_nonfinite else float("inf")
    scale = max(float(np.max(np.abs(r[finite]), initial=0.0)), 1.0) if r.size else 1.0
    worst = slice_error(unpadded(np.where(finite, r, 0.0), mask), unpadded(np.where(finite, c, 0.0), mask)) if same_nonfinite else BROKEN
    return OutputFidelity(name, err, scale, _cosine(r[finite], c[finite]), True, worst, tolerance)


CLASS_SCORES = re.compile(r"logit|prob", re.IGNORECASE)  # output names of class scores: logits, probabilities, probs
TOP1 = " top-1"


def class_choices(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The class each row of a class-score output picks (``'logits top-1'``: its arg-max over the last axis), for
    outputs named like class scores with the classes last (``[N, C]``, a language model's ``[N, S, V]``): what a
    classifier or a decoder is used for, which a small relative error of the scores may still change."""
    return {f"{name}{TOP1}": array.argmax(axis=-1) for name, array in outputs.items()
            if isinstance(array, np.ndarray) and array.dtype.kind == "f" and array.ndim in (2, 3) and array.shape[-1] >= 2
            and array.size and CLASS_SCORES.search(name)}


def is_categorical(dtype: np.dtype) -> bool:
    """Whether values of ``dtype`` are categories (integers, booleans: labels, indices, masks), not quantities."""
    return np.dtype(dtype).kind in "biu"


def _categorical(name: str, ref: np.ndarray, cand: np.ndarray, mask: np.ndarray | None, tolerance: float) -> OutputFidelity:
    """An integer or boolean output: its largest difference (any change breaks exactness) and the share of its
    values that changed, padding left out; cosine is the share unchanged."""
    differs = unpadded(ref != cand, mask)
    changed = float(differs.mean()) if differs.size else 0.0
    r = ref.astype(np.float64)
    err = float(np.max(np.abs(r - cand.astype(np.float64)), initial=0.0))
    scale = max(float(np.max(np.abs(r), initial=0.0)), 1.0)
    return OutputFidelity(name, err, scale, 1.0 - changed, True, SAME, tolerance, changed)


def _equality(name: str, equal: bool, tolerance: float = EXACT_RELATIVE_TOLERANCE) -> OutputFidelity:
    """The fidelity of an output judged only as equal or not (booleans, strings, empty optionals)."""
    return OutputFidelity(name, 0.0 if equal else float("inf"), 1.0, 1.0 if equal else 0.0, True, SAME if equal else BROKEN, tolerance)


def slice_error(reference: np.ndarray, candidate: np.ndarray) -> SliceError:
    """The larger of the whole output's relative error and, along each of ``slice_axes``, the root mean square
    of its slices' relative errors (each slice judged against its own spread), with the worst slice's index."""
    worst = SliceError(float(_relative_errors(reference.reshape(1, -1), candidate.reshape(1, -1))[0]))
    for axis in slice_axes(reference.shape):
        errors = _relative_errors(_rows(reference, axis), _rows(candidate, axis))
        error = float(np.sqrt(np.mean(errors**2)))
        if error > worst.error:
            worst = SliceError(error, axis, int(np.argmax(errors)))
    return worst


def slice_axes(shape: tuple[int, ...]) -> list[int]:
    """The axes an output is sliced along: every axis but the first of a tensor of rank 2 or more (the batch),
    with at least two slices of at least ``MIN_SLICE_ELEMENTS`` values each."""
    size = int(np.prod(shape))
    return [axis for axis in range(1 if len(shape) > 1 else 0, len(shape)) if shape[axis] >= 2 and size // shape[axis] >= MIN_SLICE_ELEMENTS]


def _rows(array: np.ndarray, axis: int) -> np.ndarray:
    """``array`` as one row per slice along ``axis``."""
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)


def _relative_errors(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per row: the rms error over the row's spread (standard deviation, floored as the module docstring says);
    infinite for an error where the reference is all zeros."""
    if reference.shape[1] == 0:
        return np.zeros(len(reference))
    magnitude = np.sqrt(np.mean(reference**2, axis=1))
    spread = np.maximum(reference.std(axis=1), SPREAD_FLOOR * np.maximum(magnitude, np.median(magnitude)))
    error = np.sqrt(np.mean((candidate - reference) ** 2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, error / spread, np.where(error > 0, np.inf, 0.0))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))
