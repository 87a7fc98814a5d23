"""onnxcompress side by side with the anchor tools, on MiniLM, a ResNet-18-layout net and the digits CNN.

For each model every tool writes its ONNX file; then the input and all results are timed together
in one alternating ``onnxcompress.bench.measure`` run (ORT CPU, ORT_ENABLE_ALL, 2 threads), so each
speed-up is a ratio measured under the same machine load. Fidelity is cosine / max abs error of the
first output against the input model on the same feeds (for MiniLM the pooled ``sentence_embedding``:
``last_hidden_state`` also holds the padding positions, which every consumer masks out). Writes ``docs/benchmarks/benchmarks.md`` and one PNG
per model (``docs/benchmarks/benchmarks_<model>.png``). A tool that fails or is missing is a row saying why.

    python tools/compare_anchors.py [--only minilm,resnet18,digits] [--rounds 5] [--out docs/benchmarks/benchmarks.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

import onnx_ir as ir

from onnxcompress import bench, compare, fidelity, io, plot, runtime, stats
from onnxcompress.cpu import cpu_features, cpu_model_name
from onnxcompress.markdown import sections, table as markdown_table
from onnxcompress.pipeline import LabelledData, Measurement, Pipeline
from onnxcompress.spec import parse_pass

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quantization as quant  # noqa: E402  (the INT8 bench's ORT anchors and trained digits teacher)

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2
PRUNE_RATIO = 0.3
NOISY_WARNING = ("**Warning: no clean rounds** (other processes used the CPU during every round, see the rounds column): "
                 "latencies are noisy; re-run on a quiet machine before quoting them.")
VERSIONED = ("onnx", "onnxruntime", "onnx-ir", "onnxscript", "onnxslim", "onnxsim", "torch", "torch-pruning")


@dataclasses.dataclass
class Case:
    """One model under test: its fp32 file, feeds, calibration batches and (for CNNs) the torch module."""

    name: str
    path: Path
    feeds: dict[str, np.ndarray]
    calibration: dict[str, np.ndarray]
    module: object | None = None
    example: tuple = ()
    labelled: LabelledData | None = None
    output: str | None = None  # the output fidelity is judged on (default: the first)


@dataclasses.dataclass
class Row:
    """One tool's result on one case (``error`` set when the tool failed or is unavailable)."""

    family: str
    tool: str
    path: Path | None = None
    seconds: float = 0.0
    error: str = ""
    size_bytes: int = 0
    nodes: int = 0
    latency: bench.Latency | None = None
    speedup: float = 0.0
    cosine: float = 0.0
    max_abs_err: float = 0.0
    accuracy: float | None = None


# ---- the models -------------------------------------------------------------------------------


def minilm_case(folder: Path) -> Case:
    """all-MiniLM-L6-v2, batch 8 × 64 tokens of real sentences."""
    from onnxcompress.models import corpus, minilm

    path = minilm.export_minilm(folder / "minilm.onnx")
    feeds = minilm.tokenize(corpus.sentences(8, seed=0), max_length=64, pad_to=64)
    calib = minilm.tokenize(corpus.sentences(256, seed=1), max_length=64, pad_to=64)
    return Case("minilm", path, feeds, calib, output="sentence_embedding")


def resnet18_case(folder: Path) -> Case:
    """ResNet-18 layout, 1000 classes, 1×3×128×128."""
    from onnxcompress.models import vision

    return _cnn_case(folder, "resnet18", vision.resnet18_layout(), (3, 128, 128))


def digits_case(folder: Path) -> Case:
    """The demo's digits teacher trained on the digits split (1×1×32×32); accuracy on the test split."""
    from onnxcompress.models import digits

    split = digits.load_split()
    case = _cnn_case(folder, "digits", trained_digits_cached(), (1, 32, 32))
    case.feeds, case.calibration = {"input": split.x_test[:1]}, {"input": split.x_train[:64]}
    case.labelled = LabelledData({"input": split.x_test}, split.y_test)
    return case


def trained_digits_cached():
    """The INT8 bench's trained digits teacher, its weights cached in tools/results/tmp/ (training is the slow part)."""
    import torch

    from onnxcompress.models import vision

    cache = quant.TMP / "digits_resnet_trained.pt"
    if cache.exists():
        module = vision.digits_resnet()
        module.load_state_dict(torch.load(cache))
        return module.eval()
    module = quant.trained_digits().eval()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), cache)
    return module


def _cnn_case(folder: Path, name: str, module, chw: tuple[int, int, int]) -> Case:
    import torch

    from onnxcompress.models.export import export_onnx

    example = (torch.randn(1, *chw),)
    path = export_onnx(module, folder / f"{name}.onnx", example, input_names=["input"], output_names=["logits"])
    rng = np.random.default_rng(0)
    return Case(name, path, {"input": rng.standard_normal((1, *chw)).astype(np.float32)},
                {"input": rng.standard_normal((64, *chw)).astype(np.float32)}, module, example)


CASES: dict[str, Callable[[Path], Case]] = {"minilm": minilm_case, "resnet18": resnet18_case, "digits": digits_case}


# ---- the tools: each writes one ONNX file and returns its path ---------------------------------


def ours(specs: str) -> Callable[[Case, Path], Path]:
    """An onnxcompress pipeline (with its own checks, without its own benchmark)."""

    def run(case: Case, out: Path) -> Path:
        passes = [parse_pass(s) for s in specs.split(";")]  # an unregistered pass is a one-line UsageError
        from onnxcompress.calibration import ArrayReader

        reader = ArrayReader(case.calibration, batch_size=8)
        result = Pipeline(passes, measurement=Measurement(benchmark=False, feeds=case.feeds)).run(io.load(case.path), calibration=reader)
        return io.save(result.model, out)

    return run


def onnxslim_tool(case: Case, out: Path) -> Path:
    """onnxslim with its defaults."""
    import onnxslim

    onnx.save(onnxslim.slim(str(case.path)), str(out))
    return out


def onnxsim_tool(case: Case, out: Path) -> Path:
    """onnx-simplifier with its defaults."""
    import onnxsim

    model, ok = onnxsim.simplify(onnx.load(str(case.path)))
    if not ok:
        raise RuntimeError("onnxsim's own check failed")
    onnx.save(model, str(out))
    return out


def via_ir(transform: Callable[[Case, ir.Model], ir.Model]) -> Callable[[Case, Path], Path]:
    """A tool from a model-to-model function (the INT8 bench's ORT anchors take and return ``ir.Model``)."""

    def run(case: Case, out: Path) -> Path:
        return io.save(transform(case, io.load(case.path)), out)

    return run


def torch_pruning_tool(case: Case, out: Path) -> Path:
    """Torch-Pruning's magnitude pruner (L2, 30% of channels, classifier kept), then the same export."""
    import copy

    import torch
    import torch_pruning as tp

    from onnxcompress.models.export import export_onnx

    module = copy.deepcopy(case.module)
    head = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    pruner = tp.pruner.MagnitudePruner(module, case.example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=PRUNE_RATIO, ignored_layers=head)
    pruner.step()
    return export_onnx(module, out, case.example, input_names=["input"], output_names=["logits"])


TOOLS: dict[str, list[tuple[str, str, Callable[[Case, Path], Path]]]] = {
    "minilm": [
        ("exact", "onnxcompress fold+cleanup+fuse", ours("fold-constants;cleanup;fuse")),
        ("exact", "onnxslim", onnxslim_tool),
        ("exact", "onnx-simplifier", onnxsim_tool),
        ("exact", "ORT transformers optimizer", via_ir(lambda case, m: quant.ort_transformers_fused(m))),
        ("int8", "onnxcompress fuse:opset=23+split-outliers+smooth+scale-tokens+quantize-dynamic:gptq",
         ours("fold-constants;cleanup;fuse:opset=23;cleanup;split-outliers;smooth;scale-tokens;quantize-dynamic:gptq=true")),
        ("int8", "ORT quantize_dynamic", via_ir(lambda case, m: quant.ort_dynamic(m, per_channel=False))),
        ("int8", "ORT transformers optimizer + quantize_dynamic per-channel",
         via_ir(lambda case, m: quant.ort_dynamic(quant.ort_transformers_fused(m), per_channel=True))),
    ],
    "cnn": [
        ("exact", "onnxcompress fold+cleanup+fuse", ours("fold-constants;cleanup;fuse")),
        ("exact", "onnxslim", onnxslim_tool),
        ("exact", "onnx-simplifier", onnxsim_tool),
        ("int8", "onnxcompress quantize-static", ours("fold-constants;cleanup;fuse;quantize-static")),
        ("int8", "ORT quantize_static U8S8 per-channel",
         via_ir(lambda case, m: quant.ort_static(m, case.calibration, u8s8_per_channel=True))),
        ("prune", f"onnxcompress prune-channels {PRUNE_RATIO}", ours(f"fold-constants;cleanup;fuse;prune-channels:ratio={PRUNE_RATIO},accept_loss=true")),
        ("prune", f"Torch-Pruning magnitude {PRUNE_RATIO}", torch_pruning_tool),
    ],
}


# ---- running and measuring --------------------------------------------------------------------


def run_case(case: Case, folder: Path, rounds: int) -> list[Row]:
    """Every tool on ``case``, then all results measured side by side with the input."""
    rows = [Row("input", "input (fp32 export)", case.path)]
    for family, tool, make in TOOLS["minilm" if case.name == "minilm" else "cnn"]:
        rows.append(_produce(family, tool, make, case, folder / f"{case.name}-{len(rows)}.onnx"))
    usable = [r for r in rows if not r.error]
    expected = runtime.run(runtime.session(case.path), case.feeds)
    for row in usable:
        _describe(row, case, expected)
    sessions = bench.sessions([r.path for r in usable], threads=THREADS)
    latencies = bench.measure(sessions, [case.feeds] * len(sessions), batch=_batch(case), threads=THREADS, rounds=rounds)
    for row, latency in zip(usable, latencies):
        row.latency, row.speedup = latency, latencies[0].median_ms / latency.median_ms
    return rows


def _produce(family: str, tool: str, make, case: Case, out: Path) -> Row:
    start = time.perf_counter()
    try:
        path = make(case, out)
    except Exception as exc:  # an anchor failing is a result to report, not a reason to stop
        return Row(family, tool, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}")
    return Row(family, tool, Path(path), time.perf_counter() - start)


def _describe(row: Row, case: Case, expected: dict[str, np.ndarray]) -> None:
    model = io.load(row.path)
    st = stats.model_stats(model)
    row.size_bytes, row.nodes = row.path.stat().st_size, st.nodes
    got = runtime.run(model, case.feeds)
    first = case.output or next(iter(expected))
    fid = fidelity.compare({first: expected[first]}, {first: got.get(first, next(iter(got.values())))})
    row.cosine, row.max_abs_err = fid.cosine, fid.max_abs_err
    row.accuracy = case.labelled.accuracy(model, THREADS) if case.labelled else None


def _batch(case: Case) -> int:
    return len(next(iter(case.feeds.values())))


# ---- writing docs/benchmarks/benchmarks.md ---------------------------------------------------------------


def markdown(results: dict[str, list[Row]], plots: dict[str, Path], seconds: float) -> str:
    """The whole benchmarks page: machine, versions, one table and one chart per model."""
    lines = ["# Benchmarks: onnxcompress and the anchor tools, side by side", "",
             f"Generated by `tools/compare_anchors.py` in {seconds:.0f} s. Latency: ORT CPU EP, ORT_ENABLE_ALL, "
             f"{THREADS} threads, models alternated round by round in one run; **speedup is the ratio to the fp32 "
             "input measured in the same run** (rounds where other processes used > 0.25 core are dropped). "
             "Fidelity: first output against the fp32 input on the same feeds (MiniLM: sentence_embedding, since last_hidden_state also holds padding positions every consumer masks out). The digits CNN is trained (accuracy on its test split); "
             "the ResNet-18 layout carries seeded, untrained weights (fidelity is its quality axis).", "", *machine_lines(), ""]
    if any(r.latency and not r.latency.clean for rows in results.values() for r in rows):
        lines += [NOISY_WARNING, ""]
    for name, rows in results.items():
        header = ["family", "tool", "size MB", "nodes", "median ms (p10-p90)", "speedup", "cosine", "max abs err", "accuracy", "rounds kept/dropped", "tool s"]
        lines += [f"## {name}", "", *markdown_table(header, map(_table_cells, rows))]
        lines += ["", f"![{name}]({plots[name].name})", ""] if name in plots else [""]
    return "\n".join(lines) + "\n"


def _table_cells(r: Row) -> list[str]:
    if r.error:
        return [r.family, r.tool, *["-"] * 8, f"failed: {r.error}"]
    lat = r.latency
    return [r.family, r.tool, f"{r.size_bytes / 1e6:.2f}", r.nodes, f"{lat.median_ms:.3f} ({lat.p10_ms:.3f}-{lat.p90_ms:.3f})",
            f"{r.speedup:.2f}x", f"{r.cosine:.6f}", f"{r.max_abs_err:.2e}", "-" if r.accuracy is None else f"{r.accuracy:.4f}",
            f"{lat.rounds_kept}/{lat.rounds_dropped}", f"{r.seconds:.1f}"]


def machine_lines() -> list[str]:
    """CPU model, int8-relevant flags, cores, OS and package versions."""
    cpu = cpu_features()
    model_name = cpu_model_name()
    flags = sorted(cpu.flags & {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})
    versions = ", ".join(f"{p} {_version(p)}" for p in VERSIONED)
    return [f"- Machine: {model_name}, {os.cpu_count()} logical cores, {platform.machine()}, {platform.platform()}",
            f"- CPU flags that matter: {' '.join(flags) or 'none'} (int8 support: {cpu.int8_level})",
            f"- Python {platform.python_version()}; {versions}"]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tradeoff_plot(name: str, rows: list[Row], folder: Path) -> Path:
    """Size vs latency for one model, Pareto-best marked (``onnxcompress.plot.plot_tradeoff``)."""
    done = [r for r in rows if not r.error]
    by_accuracy = all(r.accuracy is not None for r in done)
    outcomes = [compare.Outcome(r.tool, r.size_bytes, r.latency.median_ms, r.accuracy if by_accuracy else r.cosine, r.speedup) for r in done]
    compare.mark_pareto(outcomes)
    return plot.plot_tradeoff(outcomes, folder / f"benchmarks_{name}.png", quality_label="accuracy" if by_accuracy else "cosine")


def main() -> None:
    """Parse arguments, run the selected cases and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "benchmarks.md")
    args = parser.parse_args()
    selected = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(selected) - set(CASES))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(CASES)}")
    start = time.perf_counter()
    results, plots = {}, {}
    with tempfile.TemporaryDirectory(prefix="anchors-") as tmp:
        for name in selected:
            print(f"[{time.perf_counter() - start:6.0f} s] {name}", flush=True)
            results[name] = run_case(CASES[name](Path(tmp)), Path(tmp), args.rounds)
            plots[name] = tradeoff_plot(name, results[name], args.out.parent)
    kept = sections(args.out.read_text()) if args.out.exists() else ""  # what other tools wrote into the page
    args.out.write_text(markdown(results, plots, time.perf_counter() - start) + (f"\n{kept}" if kept else ""))
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
