"""Train a text model on each batch cut to its longest real sequence, not at the padded length.

Calibration sentences are padded to one length (MiniLM's recipe: 32 tokens, the mean sentence 18), and a
transformer's cost grows with every position, padding included. Behind an attention mask the real positions
do not depend on how much padding follows them, so a batch cut after its last real position gives the same
values there; the outputs that run along the sequence are padded back with zeros (``targets.joined`` zeroes
padding anyway), so a cut batch's loss equals the padded batch's. The engine draws batches from sentences of
similar length (``engine.distill``'s ``lengths``), which is where the saving comes from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import onnx_ir as ir
import torch

from onnxcompress import fidelity
from onnxcompress.errors import UsageError

Run = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Trimming:
    """Which feeds are cut along their sequence axis (axis 1, the padding mask's) and, per output, the axes
    that run along the sequence and are padded back."""

    feeds: frozenset[str] = frozenset()  # none: batches run at their padded length
    outputs: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    def evaluate(self, run: Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]],
                 feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``run``'s outputs on ``feeds``, run cut and padded back."""
        if not self.feeds:
            return dict(run(feeds))
        short, full = self.cut(feeds)
        return self.pad(run(short), full)

    def lengths(self, samples: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Each sample's real length (what a batch of it is cut to); None without trimming."""
        return None if not self.feeds else next(array.astype(bool).sum(axis=1) for name, array in samples.items()
                                                  if name in self.feeds and fidelity.padding_mask({name: array}) is not None)

    def cut(self, feeds: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
        """``feeds`` cut after the batch's last real position, and the padded length to restore."""
        mask = fidelity.padding_mask({name: feeds[name].numpy() for name in self.feeds})
        full = feeds[next(iter(self.feeds))].shape[1]
        if mask is None:
            return dict(feeds), full
        length = int(np.flatnonzero(mask.any(axis=0)).max()) + 1
        return {name: tensor[:, :length] if name in self.feeds else tensor for name, tensor in feeds.items()}, full

    def pad(self, outputs: Mapping[str, torch.Tensor], full: int) -> dict[str, torch.Tensor]:
        """``outputs`` with each sequence axis padded back to ``full`` positions with zeros."""
        padded = dict(outputs)
        for name, axes in self.outputs.items():
            if name in padded:
                value = padded[name]
                widths = [0, 0] * value.dim()  # torch's pad lists (before, after) from the last axis back
                for axis in axes:
                    widths[2 * (value.dim() - 1 - axis) + 1] = full - value.shape[axis]
                padded[name] = torch.nn.functional.pad(value, widths)
        return padded


def detect(model: ir.Model, run: Run, samples: Mapping[str, np.ndarray], fixed: Mapping[str, np.ndarray]) -> Trimming:
    """How batches of ``samples`` can be cut, found by running ``model`` (``run``, with the ``fixed`` inputs) on
    two of them one position shorter; no trimming when no sample is padded, the model declares a fixed sequence
    length on an input that would be cut, or it does not run one position shorter."""
    mask = next((name for name, array in samples.items() if fidelity.padding_mask({name: array}) is not None), None)
    if mask is None:
        return Trimming()
    feeds = frozenset(name for name, array in samples.items() if array.shape[:2] == samples[mask].shape)
    declared = {value.name: value.shape for value in model.graph.inputs}
    if any(declared.get(name) is None or len(declared[name]) < 2 or isinstance(declared[name][1], int) for name in feeds):
        return Trimming()
    probe = {name: array[:2] for name, array in samples.items()}
    full = run({**probe, **fixed})
    try:
        shorter = run({**{name: array[:, :-1] if name in feeds else array for name, array in probe.items()}, **fixed})
    except UsageError:  # declared dynamic, but runs at the data's length only (a length fixed in a Reshape's constant)
        return Trimming()
    outputs = {name: axes for name, value in full.items()
               if (axes := tuple(axis for axis in range(np.ndim(value)) if np.shape(shorter[name])[axis] == np.shape(value)[axis] - 1))}
    return Trimming(feeds, outputs)
