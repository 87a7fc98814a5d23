"""Calibration samples held out from calibration, to judge a lossy pass on data it was not fitted to.

Every ``EVERY``-th sample is held out (every ``EVERY``-th chunk when the model declares a fixed
batch) until ``MAX_HELD_OUT`` samples are. So no count of the data is needed, nothing but the
held-out samples is kept in memory, and they come from across the data rather than from one end of
it (a file sorted by class or by length would otherwise hold out one class or one length). The
calibration part (``CalibrationPart``) is a reader like any other, streamed from the source reader
on every pass, with the held-out samples left out.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np
import onnx_ir as ir

from onnxcompress.calibration.validation import Feed, first_samples, gathered, joinable, model_batches

EVERY = 4
MAX_HELD_OUT = 32
RUN_SAMPLES = 8  # held-out samples of a model with a free batch are joined into runs of up to this many

Feeds = dict[str, np.ndarray]


def _marked(reader, model: ir.Model) -> Iterator[tuple[Feed, np.ndarray]]:
    """Each feed of ``reader`` in the model's batch, with a boolean mask of its held-out samples."""
    unit = held = 0
    for feed in model_batches(reader, model):
        if feed.model_batch is not None:
            chosen = unit % EVERY == EVERY - 1 and held + feed.samples <= MAX_HELD_OUT
            mask = np.full(feed.samples, chosen)
            unit += 1
        else:
            picked = (unit + np.arange(feed.samples)) % EVERY == EVERY - 1
            mask = picked & (held + np.cumsum(picked) <= MAX_HELD_OUT)
            unit += feed.samples
        held += int(mask.sum())
        yield feed, mask


def _part(feed: Feed, rows: np.ndarray) -> Feeds:
    """The model's feeds for the samples of ``feed`` selected by ``rows``."""
    return {**{name: array[rows] for name, array in feed.per_sample.items()}, **feed.fixed}


class CalibrationPart:
    """The samples of ``reader`` that are not held out: a reader (``input_names``, ``batches()``)."""

    def __init__(self, reader, model: ir.Model) -> None:
        self.input_names = list(reader.input_names)
        self._reader = reader
        self._model = model

    def batches(self) -> Iterator[Feeds]:
        """The samples of each feed that are not held out (a feed left with none is skipped)."""
        for feed, held in _marked(self._reader, self._model):
            if not held.all():
                yield _part(feed, ~held)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out samples as feeds in the model's batch, and how many samples they hold."""

    feeds: list[Feeds]
    samples: int


def held_out(reader, model: ir.Model) -> HeldOut:
    """The held-out samples of ``reader`` (none when the data has too few samples to spare one); reading
    stops once ``MAX_HELD_OUT`` samples are held."""
    runs: list[Feed] = []
    count = 0
    for part in _held_parts(reader, model):
        if runs and _fits(runs[-1], part):
            runs[-1] = _merged(runs[-1], part)
        else:
            runs.append(part)
        count += part.samples
        if count >= MAX_HELD_OUT:
            break
    return HeldOut([run.arrays() for run in runs], count)


def check_samples(reader, model: ir.Model, samples: int) -> tuple[Feeds, str]:
    """The first ``samples`` held-out samples as one feed for ``model``, repeated when fewer are held out, and a
    description: what a run checks and times each step on when no inputs are given. Held-out samples are never
    fitted on, so the check reads how a step does on data it did not see. Data too small to hold any out gives
    its first samples."""
    parts = _held_parts(reader, model)
    first = next(parts, None)
    if first is None:
        feeds, described = first_samples(reader, model, samples)
        return feeds, f"{described} (too few samples to hold any out)"
    return gathered(itertools.chain([first], parts), samples, "held-out")


def _held_parts(reader, model: ir.Model) -> Iterator[Feed]:
    """The held-out samples of each feed of ``reader`` that holds some, as feeds."""
    for feed, held in _marked(reader, model):
        if held.any():
            per_sample = {name: array[held] for name, array in feed.per_sample.items()}
            yield Feed(per_sample, feed.fixed, int(held.sum()), feed.model_batch)


def _fits(run: Feed, part: Feed) -> bool:
    """Whether ``part`` can join ``run`` in one feed: a free batch, samples that ``joinable`` says can be fed
    together, and at most ``RUN_SAMPLES`` samples in all (so held-out samples run in a few runs of bounded memory,
    not one per reader batch)."""
    return (part.model_batch is None and bool(part.per_sample) and joinable(run, part)
            and run.samples + part.samples <= RUN_SAMPLES)


def _merged(run: Feed, part: Feed) -> Feed:
    """``run`` and ``part`` as one feed."""
    per_sample = {name: np.concatenate([array, part.per_sample[name]]) for name, array in run.per_sample.items()}
    return Feed(per_sample, run.fixed, run.samples + part.samples, None)
