"""A cached decoder's next generation step, and a merged decoder's other branch: what a check runs beside a first step.

A decoder exported with its key-value cache (Optimum's ``past_key_values.N.key`` in, ``present.N.key`` out) runs
twice in generation: a first step over the prompt with empty caches, then one token at a time, each step fed
the caches the step before returned. The second kind is what generation repeats, so a chain is timed on it too
(``recommend``), and every check of a first step also runs the token after it, where a filled cache is read. A
cache input is paired with the output named like it with ``present`` for ``past_key_values`` (or ``past``) and of
the same rank. A merged decoder (Optimum's ``decoder_model_merged.onnx``) holds both steps in the two branches of
an ``If`` switched by ``use_cache_branch``: fed its first branch, a check runs the next token through the other;
fed the cache branch, the same feeds through the first.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from onnxcompress import fidelity, io, runtime
from onnxcompress.errors import UsageError
from onnxcompress.synthetic_inputs import fed_inputs

if TYPE_CHECKING:
    import onnxruntime as ort

CACHE_NAMES = (("past_key_values", "present"), ("past", "present"))
POSITIONS = ("position_ids", "cache_position")
MASK = "attention_mask"
BRANCH = "use_cache_branch"  # a merged decoder's switch (Optimum's): true runs the branch that reads the caches
NEXT_TOKEN = " (next token)"  # names an output of the next step where both steps' outputs are judged
NO_CACHE_BRANCH = " (no-cache branch)"  # names an output of a merged decoder's other branch
MAX_NEXT_STEPS = 32  # next steps a budget judges beside the first steps (one per held-out sample)
RUNS = {NEXT_TOKEN: "a generation step (one token fed its caches)",  # each run beside a fed step, for messages
        NO_CACHE_BRANCH: "the branch without the cache (a prompt's first step)"}

Feeds = dict[str, np.ndarray]
Opener = Callable[[], "ort.InferenceSession"]  # a session made on first use (``opener``)


def cache_outputs(model: ir.Model) -> dict[str, str]:
    """Each cache input of ``model`` (named like ``past_key_values``) and the output returning its next value, of the
    same rank; empty unless every cache has one."""
    outputs = {value.name: value for value in model.graph.outputs}
    pairs = {}
    for value in fed_inputs(model.graph):
        names = [value.name.replace(old, new) for old, new in CACHE_NAMES if old in value.name]
        if not names:
            continue
        found = next((outputs[name] for name in names if name in outputs), None)
        if found is None or found.shape is None or value.shape is None or len(found.shape) != len(value.shape):
            return {}
        pairs[value.name] = found.name
    return pairs


def next_step_feeds(model: ir.Model, step: Mapping[str, np.ndarray], session: ort.InferenceSession | None = None) -> Feeds | None:
    """The feeds of the step after ``step`` (its first sample) for a cached decoder: the token ``model`` picks after
    the sample (``_picked_token``) at the next position, attending to what ``step`` attended to and itself, with the
    caches ``model`` returned on it (run in ``session`` when given, one of ``model``); the other inputs (an encoder's
    states and mask) as they were, through a merged decoder's cache branch. None for any other model or feeds (no
    ``input_ids``, a fixed number of tokens)."""
    if not continues(model, step):
        return None
    pairs = cache_outputs(model)
    sample = _sample(step, 0)
    outputs = runtime.run(session or model, sample)
    per_token = _per_token_inputs(model)
    feeds = {name: array[:, -1:] if name in per_token else array for name, array in sample.items() if name not in pairs}
    feeds["input_ids"] = _picked_token(outputs, sample["input_ids"])
    if MASK in sample:
        feeds[MASK] = np.concatenate([sample[MASK], np.ones((1, 1), sample[MASK].dtype)], axis=1)
    for name in POSITIONS:
        if name in sample:
            feeds[name] = sample[name][..., -1:] + 1
    if BRANCH in sample:
        feeds[BRANCH] = np.ones_like(sample[BRANCH])
    return {**feeds, **{name: outputs[output] for name, output in pairs.items()}}


def _picked_token(outputs: Mapping[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """The token greedy generation feeds after ``ids`` (one sample's tokens): the one the scores of its last position
    pick, from an output named like class scores with a row per token or for the last token only
    (``fidelity.class_choices``); without one, the last token again. A token the model would not choose would check
    the next step on text it never sees."""
    rows = {ids.shape, (1, 1), (1,)}
    picked = next((choice for choice in fidelity.class_choices(outputs).values() if choice.shape in rows), ids)
    return picked.reshape(1, -1)[:, -1:].astype(ids.dtype)


def _per_token_inputs(model: ir.Model) -> set[str]:
    """The inputs with one value per token of ``input_ids`` (its sequence dim as their last): ``token_type_ids``."""
    ids = next((value for value in model.graph.inputs if value.name == "input_ids"), None)
    if ids is None or ids.shape is None or len(ids.shape) != 2:
        return {"input_ids"}
    tokens = ids.shape[1]
    return {value.name for value in model.graph.inputs if value.shape is not None and len(value.shape) == 2 and value.shape[1] == tokens}


def checks_beside(model: ir.Model, feeds: Mapping[str, np.ndarray], opened: Opener | None = None) -> list[tuple[str, Feeds]]:
    """The other inputs a check of ``model`` on ``feeds`` runs it on, each with the suffix naming its outputs: a cached
    decoder's next token (``next_step_feeds``: one token reading the cache, what generation repeats; after a first
    step, the only run that reads a filled cache), and beside a merged decoder's cache branch the same feeds through
    its other branch. A rewrite that breaks what one step or branch runs keeps every output of the other. ``opened``:
    the session of ``model`` to run it in (``opener``), made when first needed."""
    opened = opened or opener(model)
    return [*_next_tokens(model, [feeds], 1, opened), *((suffix, run) for suffix, run, _ in _other_branches([feeds], opened))]


def runs_beside(model: ir.Model, runs: Sequence[Mapping[str, np.ndarray]], limit: int = MAX_NEXT_STEPS) -> list[tuple[str, Feeds]]:
    """``checks_beside`` for runs of several samples (a budget's held-out batches): a merged decoder's other branch of
    each run, and the next token of each sample, up to ``limit`` of them."""
    opened = opener(model)
    return [*((suffix, run) for suffix, run, _ in _other_branches(runs, opened)), *_next_tokens(model, runs, limit, opened)]


def opener(source: ir.Model | io.Snapshot, threads: int | None = None) -> Opener:
    """A session of ``source`` at ORT's optimizer disabled, made on the first call and kept: a model that is no
    decoder never pays for one, and a decoder's checks share it."""
    return functools.cache(lambda: runtime.session(source, threads=threads, optimization="disable"))


def _next_tokens(model: ir.Model, runs: Sequence[Mapping[str, np.ndarray]], limit: int, opened: Opener) -> list[tuple[str, Feeds]]:
    """The next token of each sample of ``runs``, up to ``limit``."""
    samples = itertools.islice((_sample(run, i) for run in runs if continues(model, run) for i in range(len(run["input_ids"]))), limit)
    return [(NEXT_TOKEN, next_step_feeds(model, sample, opened())) for sample in samples]


def _other_branches(runs: Sequence[Mapping[str, np.ndarray]], opened: Opener) -> list[tuple[str, Feeds, Feeds]]:
    """Each run fed a merged decoder's cache branch, through its other branch, where that branch takes the same sizes,
    with its outputs there (it is run to learn whether it runs, and those are what a check expects)."""
    flipped = [{**run, BRANCH: np.zeros_like(run[BRANCH])} for run in runs if BRANCH in run and np.asarray(run[BRANCH]).all()]
    ran = [(run, _outputs(opened(), run)) for run in flipped]
    return [(NO_CACHE_BRANCH, run, outputs) for run, outputs in ran if outputs is not None]


def _outputs(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> Feeds | None:
    """``session``'s outputs on ``feeds``, None when it does not run on them (a branch may want inputs of other sizes
    than the other branch took)."""
    try:
        return runtime.run(session, feeds)
    except UsageError:
        return None


def unchecked_beside(model: ir.Model, feeds: Mapping[str, np.ndarray], suffixes: Collection[str]) -> list[str]:
    """One line for each run a check of ``model`` on ``feeds`` would want beside them but cannot make, given the
    ``suffixes`` of those it makes (``checks_beside``): a cached decoder's next token when it fixes how many tokens it
    takes, a merged decoder's other branch when that branch does not run on the same feeds."""
    notes = []
    if cache_outputs(model) and "input_ids" in feeds and NEXT_TOKEN not in suffixes:
        notes.append("the next token is not checked, only this step: the model takes a fixed number of tokens, so one "
                     "token cannot be fed after it")
    if BRANCH in feeds and np.asarray(feeds[BRANCH]).all() and NO_CACHE_BRANCH not in suffixes:
        notes.append(f"the branch without the cache is not checked, only the one {BRANCH} selects: it does not run on "
                     "these inputs; give inputs with it false to check that branch")
    return notes


def continues(model: ir.Model, feeds: Mapping[str, np.ndarray]) -> bool:
    """Whether ``model`` is a cached decoder that ``next_step_feeds`` can continue from ``feeds`` (not when it fixes
    how many tokens it takes: one token would not fit)."""
    return bool(cache_outputs(model)) and "input_ids" in feeds and _takes_one_token(model)


def _takes_one_token(model: ir.Model) -> bool:
    ids = next((value for value in model.graph.inputs if value.name == "input_ids"), None)
    return ids is not None and ids.shape is not None and len(ids.shape) == 2 and not (isinstance(ids.shape[1], int) and ids.shape[1] != 1)


def _sample(run: Mapping[str, np.ndarray], index: int) -> Feeds:
    """Sample ``index`` of ``run``: row ``index`` of every input batched as ``input_ids`` is, the others (a merged
    decoder's switch) as they are."""
    batch = len(run["input_ids"])
    arrays = {name: np.asarray(array) for name, array in run.items()}
    return {name: a[index:index + 1] if a.ndim and a.shape[0] == batch and name != BRANCH else a for name, a in arrays.items()}


def expected_beside(model: ir.Model, feeds: Mapping[str, np.ndarray], threads: int | None = None,
                    reference: io.Snapshot | None = None) -> list[tuple[str, Feeds, Feeds]]:
    """``checks_beside`` with ``model``'s outputs on each at ORT's optimizer disabled (run on ``reference``, its snapshot,
    when given, in the one session the checks use): what a rewrite's next step or other branch is judged against. The
    other branch's are those it gave when run to learn whether it runs."""
    opened = opener(reference or model, threads)
    tokens = [(suffix, step, runtime.run(opened(), step)) for suffix, step in _next_tokens(model, [feeds], 1, opened)]
    return [*tokens, *_other_branches([feeds], opened)]
