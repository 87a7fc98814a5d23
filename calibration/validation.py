"""Calibration data fitted to a model: which arrays carry samples, feeds in the model's own batch, and checks.

The model's batch. Samples are fed in chunks of the first dim the model declares for its per-sample
inputs when that dim is fixed (a model exported with a batch of 1 gets one sample at a time), and in
runs of any size when it is free. Chunks are cut across reader batches; samples left over at the end,
fewer than one chunk, are dropped (never padded: a padded sample would shift the activation ranges).

Which arrays carry samples (``feed_layout``, the one rule). Compared with the input the model declares:

- an array of one rank less is one sample without its batch axis: it gets that axis and is repeated
  to the run's size (or to the declared first dim, when that is fixed and differs from the model's batch);
- a scalar (rank 0) has no sample axis and is fed as it is with every chunk;
- an array whose shape is exactly the model's full static shape is fed as it is with every chunk when
  other arrays carry samples (a state tensor given once); when none does, such arrays that agree on
  their first dim are the samples, else the batch is fed once as it is;
- any other array carries samples along its first axis, and all such arrays must agree on their count.

Every feed is then checked: names, dtypes, shapes (dynamic dims included, shared names agreeing) and
finite values. Every mismatch is one ``UsageError`` line naming the input, so a wrong file never
silently produces a wrongly calibrated model. The checks run feed by feed while activations stream,
so validation costs no extra pass over the data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Mapping

import numpy as np
import onnx_ir as ir

from onnxcompress.errors import UsageError

SAMPLES, FIXED, UNBATCHED = "samples", "fixed", "unbatched"


def model_inputs(model: ir.Model) -> list[ir.Value]:
    """The graph inputs a caller must feed (inputs that are also initializers are optional)."""
    return [v for v in model.graph.inputs if v.name not in model.graph.initializers]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a batch of calibration arrays is fed: each array's role, the sample count and the model's batch.

    ``roles`` maps a name to ``SAMPLES`` (first axis = samples), ``FIXED`` (fed as it is with every chunk)
    or ``UNBATCHED`` (one sample lacking its batch axis); ``model_batch`` is the fixed first dim the model
    declares for the per-sample inputs, None when it is free.
    """

    roles: dict[str, str]
    samples: int
    model_batch: int | None

    def held(self) -> set[str]:
        """Names of the arrays that have no sample axis to slice."""
        return {name for name, role in self.roles.items() if role != SAMPLES}


def feed_layout(model: ir.Model | None, shapes: Mapping[str, tuple[int, ...]], carrying: Collection[str] = ()) -> Layout:
    """The role of each array of ``shapes`` against ``model``'s declared inputs (the rule in the module docstring).

    Without a model only scalars are held. ``carrying`` names arrays known to carry samples (from an
    earlier batch of the same data), so an array that happens to have the full static shape stays one.
    """
    declared = {v.name: v.shape for v in model.graph.inputs} if model is not None else {}
    roles = {name: _role(shape, declared.get(name), name in carrying) for name, shape in shapes.items()}
    whole = [name for name, role in roles.items() if role is None]
    counts = {name: shapes[name][0] for name, role in roles.items() if role == SAMPLES}
    if counts or len({shapes[name][0] for name in whole}) > 1:
        roles.update((name, FIXED) for name in whole)
    else:
        roles.update((name, SAMPLES) for name in whole)
        counts = {name: shapes[name][0] for name in whole}
    if len(set(counts.values())) > 1:
        raise UsageError(f"calibration inputs have different sample counts: {counts}")
    batches = {_static_first_dim(declared.get(name)) for name in counts} - {None}
    if len(batches) > 1:
        raise UsageError(f"the model's per-sample inputs declare different batch sizes: {sorted(batches)}")
    return Layout(roles, next(iter(counts.values()), 1), next(iter(batches), None))


def _role(shape: tuple[int, ...], dims: ir.Shape | None, carrying: bool) -> str | None:
    """SAMPLES, FIXED or UNBATCHED; None for an array with the model's full static shape (decided with the others)."""
    if dims is not None and len(shape) == len(dims) - 1:
        return UNBATCHED
    if not shape:
        return FIXED
    if dims is None or carrying or not all(isinstance(d, int) for d in dims) or tuple(dims) != shape:
        return SAMPLES
    return None


def _static_first_dim(dims: ir.Shape | None) -> int | None:
    """The first dim the model declares for an input, when it is a number."""
    return dims[0] if dims is not None and len(dims) and isinstance(dims[0], int) else None


@dataclasses.dataclass(frozen=True)
class Feed:
    """Calibration samples ready for the model: ``per_sample`` arrays (first axis = samples) and ``fixed`` ones.

    ``model_batch`` is None when runs of any number of samples may be fed, else ``samples`` equals it.
    """

    per_sample: dict[str, np.ndarray]
    fixed: dict[str, np.ndarray]
    samples: int
    model_batch: int | None

    def arrays(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The model's feeds for samples ``start:stop`` (all of them by default)."""
        return {**{name: array[start:stop] for name, array in self.per_sample.items()}, **self.fixed}


def first_samples(reader, model: ir.Model, samples: int) -> tuple[dict[str, np.ndarray], str]:
    """The reader's first ``samples`` samples as feeds for ``model`` (its whole first batch when the model's batch
    is fixed), repeated when the data has fewer, and a description: real inputs to check and time a model on when
    no held-out samples are there to take (``holdout.check_samples``)."""
    return gathered(model_batches(reader, model), samples)


def gathered(parts: Iterable[Feed], samples: int, kind: str = "") -> tuple[dict[str, np.ndarray], str]:
    """The first ``samples`` samples of ``parts`` as one feed (the first part whole when the model's batch is fixed),
    repeated to ``samples`` when they hold fewer (a run's ``--batch`` is timed at that batch), and a description
    (``kind``: which calibration samples, e.g. ``held-out``). Parts whose samples cannot join the first's (other
    shapes or fixed arrays, as text padded per reader batch has) are passed over."""
    kind = f"{kind} " if kind else ""
    parts = iter(parts)
    first = next(parts)
    if first.model_batch is not None:
        return first.arrays(), f"the first {kind}calibration batch ({first.samples} samples, the model's fixed batch)"
    taken, have = [first], first.samples
    while have < samples and (part := next(parts, None)) is not None:
        if joinable(first, part):
            taken.append(part)
            have += part.samples
    joined = {name: np.concatenate([part.per_sample[name] for part in taken])[:samples] for name in first.per_sample}
    count = min(samples, have)
    described = f"the first {kind}calibration sample" if count == 1 else f"the first {count} {kind}calibration samples"
    if count < samples:
        rows = np.arange(samples) % count
        joined = {name: array[rows] for name, array in joined.items()}
        described += f", repeated to the batch of {samples}"
    return {**joined, **first.fixed}, described


def joinable(first: Feed, part: Feed) -> bool:
    """Whether ``part``'s samples can be fed in one run with ``first``'s: same arrays, sample shapes and fixed arrays."""
    return (first.per_sample.keys() == part.per_sample.keys() and first.fixed.keys() == part.fixed.keys()
            and all(first.per_sample[n].shape[1:] == a.shape[1:] for n, a in part.per_sample.items())
            and all(np.array_equal(first.fixed[n], a) for n, a in part.fixed.items()))


def model_batches(reader, model: ir.Model) -> Iterator[Feed]:
    """The reader's samples in the model's own batch, each feed checked against ``model``; raises if none is fed.

    At most one reader batch and one chunk of leftover samples are held at a time.
    """
    check_names(reader.input_names, model)
    carrying: set[str] = set()
    pending: Feed | None = None
    read = fed = 0
    for index, batch in enumerate(reader.batches()):
        feed = _feed(batch, model, carrying)
        carrying.update(feed.per_sample)
        read += feed.samples
        if feed.model_batch is not None:
            chunks, pending = _chunks(_joined(pending, feed, index), feed.model_batch)
        else:
            chunks = [feed]
        for chunk in chunks:
            check_batch(chunk.arrays(), model, index)
            fed += chunk.samples
            yield chunk
    if fed == 0:
        if read:
            raise UsageError(f"calibration data has fewer samples ({read}) than the model's batch of {pending.model_batch}")
        raise UsageError("calibration data is empty: the reader yielded no samples")


def _feed(batch: Mapping[str, np.ndarray], model: ir.Model, carrying: Collection[str]) -> Feed:
    """One reader batch as a feed: roles from ``feed_layout``, unbatched arrays given their batch axis."""
    layout = feed_layout(model, {name: np.shape(array) for name, array in batch.items()}, carrying)
    declared = {v.name: v.shape for v in model.graph.inputs}
    per_sample, fixed = {}, {}
    for name, array in batch.items():
        role = layout.roles[name]
        if role == UNBATCHED:
            first = _static_first_dim(declared[name])
            own = first is not None and first != layout.model_batch
            array = np.repeat(np.asarray(array)[None], first if own else layout.samples, axis=0)
            role = FIXED if own else SAMPLES
        (per_sample if role == SAMPLES else fixed)[name] = np.asarray(array)
    return Feed(per_sample, fixed, layout.samples, layout.model_batch)


def _joined(pending: Feed | None, feed: Feed, index: int) -> Feed:
    """``feed`` with the samples left over from the previous batch put in front."""
    if pending is None:
        return feed
    if set(pending.per_sample) != set(feed.per_sample):
        raise UsageError(f"calibration batch {index} changes which inputs carry samples")
    per_sample = {name: np.concatenate([pending.per_sample[name], array]) for name, array in feed.per_sample.items()}
    return dataclasses.replace(feed, per_sample=per_sample, samples=pending.samples + feed.samples)


def _chunks(feed: Feed, size: int) -> tuple[list[Feed], Feed | None]:
    """``feed`` cut into feeds of exactly ``size`` samples, and the samples left over (None if none)."""
    def part(start: int, stop: int) -> Feed:
        per_sample = {name: array[start:stop] for name, array in feed.per_sample.items()}
        return dataclasses.replace(feed, per_sample=per_sample, samples=stop - start)

    whole = feed.samples - feed.samples % size
    chunks = [part(start, start + size) for start in range(0, whole, size)]
    return chunks, part(whole, feed.samples) if whole < feed.samples else None


def check_names(names: Iterable[str], model: ir.Model) -> None:
    """Raise unless ``names`` are exactly the model's required inputs."""
    given, wanted = set(names), [v.name for v in model_inputs(model)]
    missing = [n for n in wanted if n not in given]
    if missing:
        raise UsageError(f"calibration data lacks model input(s) {missing}; it has {sorted(given)}")
    optional = set(model.graph.initializers)
    unknown = sorted(given - set(wanted) - optional)
    if unknown:
        raise UsageError(f"calibration data has input(s) {unknown} the model does not take; its inputs are {wanted}")


def check_batch(batch: Mapping[str, np.ndarray], model: ir.Model, index: int) -> None:
    """Raise unless the feed from batch number ``index`` has the model's dtypes, shapes and only finite values."""
    symbols: dict[str, int] = {}
    for value in model_inputs(model):
        array = batch[value.name]
        _check_dtype(value, array)
        _check_shape(value, array, symbols)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise UsageError(f"calibration input {value.name!r} has NaN or inf values (batch {index})")


def validate_reader(reader, model: ir.Model) -> int:
    """Check every feed of ``reader`` in ``model``'s batch and return the number of samples fed."""
    return sum(feed.samples for feed in model_batches(reader, model))
def _check_dtype(value: ir.Value, array: np.ndarray) -> None:
    if value.dtype is None:
        return
    expected = value.dtype.numpy()
    if array.dtype != expected:
        raise UsageError(f"calibration input {value.name!r} is {array.dtype} but the model expects {expected}")


def _check_shape(value: ir.Value, array: np.ndarray, symbols: dict[str, int]) -> None:
    if value.shape is None:
        return
    dims = list(value.shape)
    fits = len(dims) == array.ndim and all(_dim_fits(d, n, symbols) for d, n in zip(dims, array.shape))
    if not fits:
        raise UsageError(
            f"calibration input {value.name!r} has shape {tuple(array.shape)} but the model expects {shape_label(dims)}"
        )


def _dim_fits(dim: int | ir.SymbolicDim, size: int, symbols: dict[str, int]) -> bool:
    if isinstance(dim, int):
        return dim == size
    if dim.value is None:
        return True
    return symbols.setdefault(dim.value, size) == size


def shape_label(dims: Iterable[int | ir.SymbolicDim]) -> str:
    """A declared shape as text, ``(N, 3, 224, 224)``, with ``?`` for an unnamed dynamic dim."""
    return "(" + ", ".join(str(d) if isinstance(d, int) else d.value or "?" for d in dims) + ")"
