"""The end-to-end demo: train a digits teacher, distil a student, export both, compress the student.

Everything is seeded and runs offline on scikit-learn's bundled digits; ``run_demo`` writes the
models, the held-out split and the reports into one folder and returns what it measured.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from onnxcompress import io, markdown, plot, progress
from onnxcompress.calibration import ArrayReader
from onnxcompress.apps import stage_table
from onnxcompress.distill.engine import distill
from onnxcompress.distill.export import export
from onnxcompress.models import digits, training, vision
from onnxcompress.pipeline import LabelledData, Measurement, Pipeline
from onnxcompress.report import Report
from onnxcompress.spec import parse_pass

INPUT, OUTPUT = "image", "logits"
DEFAULT_CHAIN = (
    "fold-constants", "cleanup", "fuse", "prune-channels:ratio=0.3,bias_fold=true,reconstruct=true", "quantize-static",
)
VALIDATION_FRACTION = 0.15
SMOKE_NOTE = "smoke run (--quick): too little training for accuracy to mean anything, so no target is judged"


@dataclasses.dataclass
class DemoSettings:
    """Training and measuring knobs; ``quick()`` is the reduced smoke run (tests, a first try)."""

    teacher_width: int = 80  # batch-1 ORT latency ≥ 1 ms: compute-bound, not runtime overhead
    student_width: int = 24
    teacher_epochs: int = 10
    student_epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    temperature: float = 2.0
    alpha: float = 0.5
    patience: int = 10
    seed: int = 0
    chain: tuple[str, ...] = DEFAULT_CHAIN
    threads: int = 2
    rounds: int = 7
    max_drop: float = 0.01  # a lossy pass losing more test accuracy than this is rolled back
    train_samples: int | None = None  # None: the whole training split
    benchmark_steps: bool = True
    smoke: bool = False  # models trained too little to judge the targets (accuracies near chance)

    @classmethod
    def quick(cls) -> DemoSettings:
        """Small models, a subset and short benchmarks: the whole path in about a minute, no target judged."""
        return cls(teacher_width=8, student_width=4, teacher_epochs=2, student_epochs=3, patience=2, rounds=2,
                   train_samples=256, benchmark_steps=False, smoke=True)


@dataclasses.dataclass
class DemoResult:
    """The stage table (teacher → final), the pass chain's own report, and the targets met (None: a smoke run)."""

    stages: Report
    pipeline: Report
    targets: dict[str, bool] | None

    def target_lines(self) -> list[str]:
        """``met: …`` / ``MISSED: …`` per target, or the smoke-run note when none was judged."""
        if self.targets is None:
            return [SMOKE_NOTE]
        return [f"{'met' if ok else 'MISSED'}: {name}" for name, ok in self.targets.items()]


def run_demo(out: Path, settings: DemoSettings | None = None) -> DemoResult:
    """Run the whole demo into folder ``out`` (created) and return its measurements."""
    s = settings or DemoSettings()
    out.mkdir(parents=True, exist_ok=True)
    split = digits.load_split(size=32, seed=s.seed)
    teacher, student, label_only = _train_models(split, s)
    sample = (torch.from_numpy(split.x_test[:1]),)
    paths = {name: export(m, out / f"{name}.onnx", sample, input_names=[INPUT], output_names=[OUTPUT]) for name, m in
             [("teacher", teacher), ("student", student), ("student_labels_only", label_only)]}
    test = LabelledData({INPUT: split.x_test}, split.y_test)
    progress.log("running the pass chain on the student")
    chain = [parse_pass(spec) for spec in s.chain]
    measurement = Measurement(benchmark=s.benchmark_steps, each_step=s.benchmark_steps, threads=s.threads, feeds={INPUT: split.x_test[:1]}, labelled=test, rounds=s.rounds)
    pipeline = Pipeline(chain, measurement=measurement, max_drop=s.max_drop)
    compressed = pipeline.run(io.load(paths["student"]), calibration=ArrayReader({INPUT: split.x_train}))
    io.save(compressed.model, out / "final.onnx")
    io.save_arrays(out / "test.npz", {"x": split.x_test, "y": split.y_test})
    progress.log("measuring every stage side by side")
    named = [("teacher", io.load(paths["teacher"])), ("student (labels only)", io.load(paths["student_labels_only"])),
             ("student (distilled)", io.load(paths["student"])), ("final (after passes)", compressed.model)]
    table = stage_table.measure_stages([stage_table.Stage(*n) for n in named], test, threads=s.threads, rounds=s.rounds)
    result = DemoResult(table, compressed.report, None if s.smoke else _targets(table))
    _write_reports(result, out)
    return result


def train_teacher(split: digits.DigitsSplit, s: DemoSettings) -> torch.nn.Module:
    """The demo's teacher, trained on the training split less a validation part that picks its best epoch
    (what ``tools/bench_recover.py`` prunes and recovers, too)."""
    train, val = _carve_validation(split.x_train[: s.train_samples], split.y_train[: s.train_samples], s.seed)
    teacher = vision.digits_resnet(num_classes=10, width=s.teacher_width, seed=s.seed)
    training.fit(teacher, *train, epochs=s.teacher_epochs, lr=s.lr, batch_size=s.batch_size, seed=s.seed, patience=s.patience,
                 x_val=val[0], y_val=val[1])
    return teacher


def _train_models(split: digits.DigitsSplit, s: DemoSettings):
    """The trained teacher, the distilled student and the same student trained on labels alone."""
    train, val = _carve_validation(split.x_train[: s.train_samples], split.y_train[: s.train_samples], s.seed)
    supervised = {"epochs": s.student_epochs, "lr": s.lr, "batch_size": s.batch_size, "seed": s.seed, "patience": s.patience}
    progress.log("training the teacher")
    teacher = train_teacher(split, s)
    progress.log("distilling the student")
    student = vision.digits_student(num_classes=10, width=s.student_width, seed=s.seed)
    distill(teacher, student, train, val=val, temperature=s.temperature, alpha=s.alpha, **supervised)
    progress.log("training the same student on labels alone")
    label_only = vision.digits_student(num_classes=10, width=s.student_width, seed=s.seed)
    training.fit(label_only, *train, **supervised, x_val=val[0], y_val=val[1])
    return teacher, student, label_only


def _carve_validation(x: np.ndarray, y: np.ndarray, seed: int):
    """Split the training set into (train, validation) pairs; the test split stays untouched."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - VALIDATION_FRACTION))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def _targets(table: Report) -> dict[str, bool]:
    """The issue's goals: final ≥ 8× smaller and ≥ 3× faster than the teacher, ≤ 1 point lost; KD beats labels."""
    teacher, labels_only, distilled, final = table.steps
    return {
        "final >= 8x smaller than teacher": teacher.size_bytes >= 8 * final.size_bytes,
        "final >= 3x faster than teacher (batch 1)": final.speedup >= 3.0,
        "final loses <= 1 accuracy point": teacher.accuracy - final.accuracy <= 0.01,
        "distilled student beats label-only student": distilled.accuracy > labels_only.accuracy,
    }


def _write_reports(result: DemoResult, out: Path) -> None:
    data = {"stages": result.stages.to_dict(), "pipeline": result.pipeline.to_dict(), "targets": result.targets}
    io.write_bytes(out / "report.json", json.dumps(data, indent=2, default=str).encode())
    io.write_bytes(out / "report.md", demo_markdown(result).encode())
    if plot.available():
        plot.plot_report(result.stages, out / "report.png")


def demo_markdown(result: DemoResult) -> str:
    """Stage table, targets, then the pass chain's per-step report."""
    targets = [f"- {line}" for line in result.target_lines()]
    return "\n".join([
        "# onnxcompress demo: digits teacher → distilled student → pass chain", "",
        "## Stages (ORT CPU, measured side by side; speedup vs the teacher)", "",
        *markdown.records_table(stage_table.stage_rows(result.stages)), "", "## Targets", "", *targets, "",
        "## Pass chain on the distilled student", "", result.pipeline.to_markdown(),
    ])
