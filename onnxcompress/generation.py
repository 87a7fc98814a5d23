"""A cached decoder's next generation step: the feeds of one new token after a first step, from the model's own caches.

A decoder exported with its key-value cache (Optimum's ``past_key_values.N.key`` in, ``present.N.key`` out) runs
twice in generation: a first step over the prompt with empty caches, then one token at a time, each step fed
the caches the step before returned. The second kind is what generation repeats, so a chain is timed on it too
(``recommend``). A cache input is paired with the output named like it with ``present`` for ``past_key_values``
(or ``past``) and of the same rank.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxcompress import io, runtime
from onnxcompress.synthetic_inputs import fed_inputs, starting_state

CACHE_NAMES = (("past_key_values", "present"), ("past", "present"))
POSITIONS = "position_ids"
MASK = "attention_mask"
NEXT_TOKEN = " (next token)"  # names an output of the next step where both steps' outputs are judged
MAX_NEXT_STEPS = 32  # next steps a budget judges beside the first steps (one per held-out sample)


def cache_outputs(model: ir.Model) -> dict[str, str]:
    """Each cache input of ``model`` and the output returning its next value; empty unless every cache has one."""
    outputs = {value.name: value for value in model.graph.outputs}
    caches = [value for value in fed_inputs(model.graph) if starting_state(value, 1) is not None]
    pairs = {}
    for value in caches:
        names = [value.name.replace(old, new) for old, new in CACHE_NAMES if old in value.name]
        found = next((outputs[name] for name in names if name in outputs), None)
        if found is None or found.shape is None or value.shape is None or len(found.shape) != len(value.shape):
            return {}
        pairs[value.name] = found.name
    return pairs


def next_step_feeds(model: ir.Model, first: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The feeds of the step after ``first`` (one sample, its caches empty) for a cached decoder: the sample's last
    token again at the next position, attending to what the first step attended to and itself, with the caches
    ``model`` returned; None for any other model or feeds (caches already filled, no ``input_ids``)."""
    pairs = cache_outputs(model)
    if not pairs or "input_ids" not in first or any(np.size(first[name]) for name in pairs):
        return None
    sample = {name: np.asarray(array)[:1] for name, array in first.items()}
    outputs = runtime.run(model, sample)
    length = sample["input_ids"].shape[1]
    feeds = {name: array[:, -1:] for name, array in sample.items() if name not in pairs}
    if MASK in sample:
        feeds[MASK] = np.concatenate([sample[MASK], np.ones((1, 1), sample[MASK].dtype)], axis=1)
    if POSITIONS in sample:
        feeds[POSITIONS] = np.full((1, 1), length, sample[POSITIONS].dtype)
    return {**feeds, **{name: outputs[output] for name, output in pairs.items()}}


def next_steps(model: ir.Model, runs: Sequence[Mapping[str, np.ndarray]], limit: int = MAX_NEXT_STEPS) -> list[dict[str, np.ndarray]]:
    """The next step (``next_step_feeds``) of each sample of ``runs`` (first steps of a cached decoder, several samples
    each), up to ``limit`` of them; empty for any other model or feeds."""
    if not cache_outputs(model):
        return []
    samples = ({name: np.asarray(array)[i:i + 1] for name, array in run.items()} for run in runs for i in range(_samples(run)))
    found = (next_step_feeds(model, sample) for sample in samples)
    return list(itertools.islice((feeds for feeds in found if feeds is not None), limit))


def _samples(run: Mapping[str, np.ndarray]) -> int:
    ids = run.get("input_ids")
    return 0 if ids is None or np.ndim(ids) != 2 else ids.shape[0]


def next_step_expected(model: ir.Model, feeds: Mapping[str, np.ndarray], threads: int | None = None,
                       reference: io.Snapshot | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """The feeds of the step after ``feeds`` (``next_step_feeds``) and ``model``'s outputs there at ORT's optimizer
    disabled (run on ``reference``, its snapshot, when given), what a rewrite's next step is judged against: one
    that mishandles a filled cache keeps every output of a first step, whose caches are empty. None when ``feeds``
    have no next step."""
    next_feeds = next_step_feeds(model, feeds)
    if next_feeds is None:
        return None
    return next_feeds, runtime.run(reference or model, next_feeds, threads=threads, optimization="disable")
