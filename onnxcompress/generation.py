"""A cached decoder's next generation step: the feeds of one new token after a first step, from the model's own caches.

A decoder exported with its key-value cache (Optimum's ``past_key_values.N.key`` in, ``present.N.key`` out) runs
twice in generation: a first step over the prompt with empty caches, then one token at a time, each step fed
the caches the step before returned. The second kind is what generation repeats, so a chain is timed on it too
(``recommend``). A cache input is paired with the output named like it with ``present`` for ``past_key_values``
(or ``past``) and of the same rank.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxcompress import runtime
from onnxcompress.synthetic_inputs import fed_inputs, starting_state

CACHE_NAMES = (("past_key_values", "present"), ("past", "present"))
POSITIONS = "position_ids"
MASK = "attention_mask"


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
    token again at the next position, attending to everything before, with the caches ``model`` returned; None
    for any other model or feeds (caches already filled, no ``input_ids``)."""
    pairs = cache_outputs(model)
    if not pairs or "input_ids" not in first or any(np.size(first[name]) for name in pairs):
        return None
    sample = {name: np.asarray(array)[:1] for name, array in first.items()}
    outputs = runtime.run(model, sample)
    length = sample["input_ids"].shape[1]
    feeds = {name: array[:, -1:] for name, array in sample.items() if name not in pairs}
    if MASK in sample:
        feeds[MASK] = np.ones((1, length + 1), sample[MASK].dtype)
    if POSITIONS in sample:
        feeds[POSITIONS] = np.full((1, 1), length, sample[POSITIONS].dtype)
    return {**feeds, **{name: outputs[output] for name, output in pairs.items()}}
