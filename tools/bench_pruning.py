"""Channel-removal benchmark: our ONNX-level ``prune-channels`` beside Torch-Pruning, in one run.

ResNet-18 layout (1000 classes, 224×224): Torch-Pruning 1.6.1 (``MetaPruner``, group L2 magnitude,
50 %, classifier ignored) prunes the PyTorch module, which is then exported; we export the unpruned
module and prune the ONNX file at 50 % with no PyTorch source. MiniLM-L6 (all six layers): 50 % of
attention heads and FFN neurons; a small digits ResNet trained on scikit-learn's ``load_digits``:
accuracy at 50 % with no recovery, bias folding and least-squares ``reconstruct``. Per model: parameters, MACs, and ORT CPU latency at
ENABLE_ALL, batch 1, every variant measured in the same alternating rounds as the input model
(``onnxcompress.bench.measure``), as ratios.

    python tools/bench_pruning.py [--rounds 7] [--only resnet18,minilm,digits]

Writes docs/benchmarks/bench_pruning.md and tools/results/bench_pruning.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
from onnx_ir.passes.common import ShapeInferencePass

from onnxcompress import bench, io, runtime
from onnxcompress.markdown import table as markdown_table
from onnxcompress.passes.pruning import PruneChannels
from onnxcompress.passes.pruning.flops import model_macs
from onnxcompress.stats import parameter_count

ROOT = Path(__file__).resolve().parents[1]
JSON_OUT = ROOT / "tools" / "results" / "bench_pruning.json"
DOC_OUT = ROOT / "docs" / "benchmarks" / "bench_pruning.md"
RATIO = 0.5
MINILM_SEQ = 128
CALIBRATION_SAMPLES = 64
TARGETS = {"resnet18": "params and latency within 10 % of Torch-Pruning", "minilm": "latency < 0.65× the input's"}


def ours(source: Path, target: Path) -> None:
    """Our pass on the ONNX file alone."""
    model = io.load(source)
    PruneChannels(ratio=RATIO, accept_loss=True)(model)  # compared with Torch-Pruning, which holds no fidelity budget either
    io.save(model, target)


def resnet18_variants(work: Path) -> dict[str, Path]:
    """Input, Torch-Pruning and our 50 % ResNet-18-layout models."""
    import torch
    import torch_pruning as tp

    from onnxcompress.models import export, vision

    example = torch.zeros(1, 3, 224, 224)
    names = {"input_names": ["image"], "output_names": ["logits"]}
    source = export.export_onnx(vision.resnet18_layout(), work / "resnet18.onnx", (example,), **names)
    module = vision.resnet18_layout()
    classifier = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    pruner = tp.pruner.MetaPruner(
        module, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=RATIO, ignored_layers=classifier
    )
    pruner.step()
    torch_pruned = export.export_onnx(module, work / "resnet18.tp.onnx", (example,), **names)
    ours(source, work / "resnet18.ours.onnx")
    return {"input": source, "torch-pruning": torch_pruned, "onnxcompress": work / "resnet18.ours.onnx"}


def minilm_variants(work: Path) -> dict[str, Path]:
    """Input and our 50 % heads+FFN MiniLM."""
    from onnxcompress.models import minilm

    source = minilm.export_minilm(work / "minilm.onnx")
    ours(source, work / "minilm.ours.onnx")
    return {"input": source, "onnxcompress": work / "minilm.ours.onnx"}


def feeds_for(name: str, source: Path) -> dict:
    """Batch-1 inputs: real text at sequence 128 for MiniLM, synthetic images otherwise."""
    if name == "minilm":
        from onnxcompress.models import corpus, minilm

        return minilm.tokenize(corpus.sentences(1, seed=0), pad_to=MINILM_SEQ)
    return runtime.synthetic_inputs(io.load(source), batch=1)


def bench_model(name: str, variants: dict[str, Path], rounds: int) -> dict:
    """Size and side-by-side latency of every variant of one model."""
    feeds = feeds_for(name, variants["input"])
    sessions = bench.sessions(list(variants.values()))
    latencies = bench.measure(sessions, [feeds] * len(sessions), batch=1, rounds=rounds)
    base = latencies[0].median_ms
    rows = {}
    for (variant, path), latency in zip(variants.items(), latencies):
        model = io.load(path)
        ShapeInferencePass()(model)
        rows[variant] = {
            "params": parameter_count(model),
            "macs": model_macs(model),
            "latency": latency.to_dict(),
            "latency_ratio": latency.median_ms / base,
        }
    return rows


def digits_recovery(work: Path) -> dict:
    """Test accuracy and logit MSE of a small digits ResNet pruned 50 % without/with recovery."""
    import torch

    from onnxcompress.calibration.readers import ArrayReader
    from onnxcompress.models import digits, export, training, vision

    split = digits.load_split(size=16)
    net = vision.digits_resnet(width=8)
    training.fit(net, split.x_train, split.y_train, epochs=4, lr=5e-3, batch_size=64, seed=0)
    source = export.export_onnx(net, work / "digits.onnx", (torch.zeros(1, 1, 16, 16),), input_names=["x"], output_names=["y"])
    original = io.load(source)
    reference = runtime.run(original, {"x": split.x_test})["y"]
    rows = {"input": {"accuracy": float((reference.argmax(1) == split.y_test).mean()), "logit_mse": 0.0}}
    for label, options in {"none": {}, "bias_fold": {"bias_fold": True}, "reconstruct": {"reconstruct": True}}.items():
        model = io.clone(original)
        PruneChannels(ratio=RATIO, accept_loss=True, **options).apply(model, calibration=ArrayReader({"x": split.x_train[:CALIBRATION_SAMPLES]}, batch_size=32))
        logits = runtime.run(model, {"x": split.x_test})["y"]
        rows[label] = {
            "accuracy": float((logits.argmax(1) == split.y_test).mean()),
            "logit_mse": float(np.mean((logits - reference) ** 2)),
        }
    return rows


def to_markdown(results: dict) -> str:
    """The results as a markdown page."""
    lines = [
        "# Channel removal: `prune-channels` vs Torch-Pruning",
        "",
        f"Ratio {RATIO}, ORT CPU, ENABLE_ALL, batch 1, {results['threads']} threads, median of alternating rounds",
        "(latency ratio = variant / input model in the same run). Generated by `tools/bench_pruning.py`;",
        "the machine was shared, so latencies are noisy (rounds with foreign CPU load are dropped; `clean` says",
        "whether any clean round was left).",
        "",
    ]
    lines += markdown_table(
        ["model", "variant", "params", "MACs/sample", "latency ms", "× input", "clean"],
        ([name, variant, f"{row['params']:,}", f"{row['macs']:,}", f"{row['latency']['median_ms']:.2f}", f"{row['latency_ratio']:.3f}",
          row["latency"]["clean"]] for name, rows in results["models"].items() for variant, row in rows.items()),
        align=["---", "---", "---:", "---:", "---:", "---:", "---"])
    lines += ["", "Targets: " + "; ".join(f"{k}: {v}" for k, v in TARGETS.items()), ""]
    if "digits" in results:
        lines += [
            f"## Recovery without training: digits ResNet (width 8, 16×16), {RATIO:.0%} removed, "
            f"{CALIBRATION_SAMPLES} calibration images",
            "",
        ]
        lines += markdown_table(["recovery", "test accuracy", "logit MSE vs input"],
                                ([k, f"{v['accuracy']:.3f}", f"{v['logit_mse']:.3f}"] for k, v in results["digits"].items()),
                                align=["---", "---:", "---:"])
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Build the variants, measure them, write the JSON and markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="resnet18,minilm,digits")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    builders = {"resnet18": resnet18_variants, "minilm": minilm_variants}
    results = {"ratio": RATIO, "threads": runtime.DEFAULT_THREADS, "platform": platform.platform(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        for name in args.only.split(","):
            if name == "digits":
                results["digits"] = digits_recovery(Path(tmp))
            else:
                results["models"][name] = bench_model(name, builders[name](Path(tmp)), args.rounds)
    io.write_bytes(JSON_OUT, json.dumps(results, indent=2).encode())
    io.write_bytes(DOC_OUT, to_markdown(results).encode())
    print(to_markdown(results))


if __name__ == "__main__":
    main()
