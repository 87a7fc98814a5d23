"""Corpus entries as ONNX Runtime's transformer optimizer leaves them (``onnxruntime.transformers.optimizer``, what
Optimum's optimized exports ship): the same models and inputs, with fused com.microsoft ops (Attention over packed
Q/K/V weights, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, QuickGelu) in place of their subgraphs."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from onnxcompress.models.hardening import hf, hf_towers
from onnxcompress.models.hardening.entry import Entry


def optimized(base: Entry, model_type: str, heads: int, hidden: int) -> Entry:
    """``base`` through ``optimize_model(model_type, num_heads, hidden_size)``, named ``base.name-ortopt``."""
    return dataclasses.replace(
        base, name=f"{base.name}-ortopt", make=functools.partial(_optimize, base, model_type, heads, hidden),
        source=f"{base.source}; onnxruntime.transformers.optimizer.optimize_model(model_type={model_type!r})",
    )


def _optimize(base: Entry, model_type: str, heads: int, hidden: int, path: Path) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    optimize_model(str(base.model()), model_type=model_type, num_heads=heads, hidden_size=hidden).save_model_to_file(str(path))
    return path


def _base(name: str) -> Entry:
    return next(entry for entry in (*hf.ENTRIES, *hf_towers.ENTRIES) if entry.name == name)


ENTRIES: list[Entry] = [
    optimized(_base("hf-bert-legacy"), "bert", 4, 128),
    optimized(_base("hf-distilbert-legacy"), "bert", 4, 128),
    optimized(_base("hf-vit-legacy"), "vit", 4, 128),
    optimized(_base("hf-clip-text-legacy"), "clip", 4, 128),
]
