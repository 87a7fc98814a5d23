"""Entropy calibration, ours vs ONNX Runtime's ``EntropyCalibrater``: time and peak memory, same model and data.

``--model digits_resnet`` (default) is the digits ResNet on 1×32×32 images; ``--model mobilenet224`` is
the MobileNetV3-style net (``onnxcompress.models.vision.mobilenetv3_style``, one input channel) on the
digits upscaled to 1×224×224, where exposing every activation costs ~45 MB per sample. The data is the
first ``--samples`` images of the digits split. Both sides calibrate every float tensor (graph inputs
and node outputs — ORT's own selection) with ``--bins`` histogram bins, fed the same batches. Each
measurement runs in a fresh subprocess so its peak RSS (``VmHWM``) is that run's own: one run timed without
tracing, one run under ``tracemalloc`` (Python-heap peak after imports; tracing slows pure-Python code,
so its time is not reported). A second point at ``--scale-samples`` (0 skips it) shows how each side's
peak RSS grows with the sample count. Writes ``tools/results/bench_calibration[_<model>].json``.

    python tools/bench_calibration.py [--model digits_resnet] [--samples 200] [--scale-samples 1000] [--batch 8] [--bins 2048]
    python tools/bench_calibration.py --model mobilenet224 --batch 32 --scale-samples 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

from onnxcompress import io
from onnxcompress.calibration import NpzReader, estimate_ranges, float_tensor_names

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tools" / "results"
SIDES = ("onnxcompress", "onnxruntime")
TARGET_PEAK_MB = 1024


MODELS = {  # name: (image size, builder of the torch module)
    "digits_resnet": (32, lambda vision: vision.digits_resnet()),
    "mobilenet224": (224, lambda vision: vision.mobilenetv3_style(num_classes=10, in_channels=1)),
}


def prepare(folder: Path, model_name: str, sample_counts: list[int]) -> tuple[Path, dict[int, Path]]:
    """Export ``model_name`` into ``folder`` and save the first N digits images for each N as an .npz."""
    import torch

    from onnxcompress.models import digits, export, vision

    size, build = MODELS[model_name]
    images = digits.load_split(size=size).x_train
    model_path = export.export_onnx(
        build(vision),
        folder / f"{model_name}.onnx",
        (torch.from_numpy(images[:1]),),
        input_names=["input"],
        output_names=["logits"],
    )
    data = {count: folder / f"calibration_{count}.npz" for count in sample_counts}
    for count, path in data.items():
        np.savez(path, input=images[:count])
    return model_path, data


def calibrate_ours(model_path: Path, data_path: Path, bins: int, batch: int) -> dict[str, tuple[float, float]]:
    """Our streaming entropy calibration of every float tensor."""
    model = io.load(model_path)
    names = [v.name for v in model.graph.inputs if v.dtype is not None and v.dtype.is_floating_point()]
    names += float_tensor_names(model)
    return dict(estimate_ranges(model, NpzReader(data_path, batch_size=batch), names, "entropy", bins=bins))


def calibrate_ort(model_path: Path, data_path: Path, bins: int, batch: int) -> dict[str, tuple[float, float]]:
    """ORT's ``EntropyCalibrater`` (``num_bins`` passed explicitly, as ``quantize_static`` does not)."""

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.iterator = NpzReader(data_path, batch_size=batch).batches()

        def get_next(self):
            return next(self.iterator, None)

    with tempfile.TemporaryDirectory() as scratch:
        calibrator = create_calibrator(
            model_path,
            augmented_model_path=str(Path(scratch) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={"num_bins": bins},
        )
        calibrator.collect_data(Batches())
        tensors = calibrator.compute_data()
    return {name: tuple(float(v) for v in data.range_value) for name, data in tensors.items()}


def worker(side: str, model_path: Path, data_path: Path, bins: int, batch: int, traced: bool) -> dict:
    """One calibration in this process: seconds (untraced) or Python-heap peak (traced), and peak RSS."""
    calibrate = calibrate_ours if side == "onnxcompress" else calibrate_ort
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    ranges = calibrate(model_path, data_path, bins, batch)
    seconds = time.perf_counter() - start
    result = {"tensors": len(ranges), "peak_rss_mb": _peak_rss_mb(), "ranges": ranges}
    if traced:
        result["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    else:
        result["seconds"] = seconds
    return result


def run_isolated(side: str, model_path: Path, data_path: Path, args: argparse.Namespace, traced: bool) -> dict:
    """``worker`` in a fresh interpreter, so its peak RSS is its own."""
    command = [sys.executable, __file__, "--worker", side, str(model_path), str(data_path)]
    command += ["--bins", str(args.bins), "--batch", str(args.batch)] + (["--traced"] if traced else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def measure(side: str, model_path: Path, data_path: Path, args: argparse.Namespace) -> dict:
    """Time and peak RSS of an untraced run, plus the Python-heap peak of a traced one."""
    timed = run_isolated(side, model_path, data_path, args, traced=False)
    traced = run_isolated(side, model_path, data_path, args, traced=True)
    return {
        "seconds": round(timed["seconds"], 3),
        "peak_rss_mb": round(timed["peak_rss_mb"], 1),
        "tracemalloc_peak_mb": round(traced["tracemalloc_peak_mb"], 1),
        "tensors": timed["tensors"],
        "ranges": timed["ranges"],
    }


def summarise(results: dict[str, dict], scaled: dict[str, dict], args: argparse.Namespace) -> dict:
    """Ratios of ORT to ours, the 1 GB target, and how the two sides' ranges compare."""
    ours, ort = results["onnxcompress"], results["onnxruntime"]
    common = sorted(set(ours["ranges"]) & set(ort["ranges"]))
    width = [
        (ours["ranges"][n][1] - ours["ranges"][n][0]) / (ort["ranges"][n][1] - ort["ranges"][n][0])
        for n in common
        if ort["ranges"][n][1] > ort["ranges"][n][0]
    ]
    return {
        "model": args.model,
        "samples": args.samples,
        "batch": args.batch,
        "bins": args.bins,
        "speedup_vs_onnxruntime": round(ort["seconds"] / ours["seconds"], 2),
        "peak_rss_ratio_onnxruntime_to_ours": round(ort["peak_rss_mb"] / ours["peak_rss_mb"], 2),
        "tracemalloc_ratio_onnxruntime_to_ours": round(ort["tracemalloc_peak_mb"] / ours["tracemalloc_peak_mb"], 1),
        "ours_under_1gb_peak_rss": ours["peak_rss_mb"] < TARGET_PEAK_MB,
        "peak_rss_growth_mb_to_scale_samples": {
            side: round(scaled[side]["peak_rss_mb"] - results[side]["peak_rss_mb"], 1) for side in scaled
        },
        "tensors_in_common": len(common),
        "median_range_width_ours_over_onnxruntime": round(float(np.median(width)), 3) if width else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="digits_resnet")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--scale-samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--bins", type=int, default=2048)
    parser.add_argument("--out", type=Path, help="default: tools/results/bench_calibration[_<model>].json")
    parser.add_argument("--worker", nargs=3, metavar=("SIDE", "MODEL", "DATA"))
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args()
    if args.worker:
        side, model_path, data_path = args.worker
        print(json.dumps(worker(side, Path(model_path), Path(data_path), args.bins, args.batch, args.traced)))
        return
    out = args.out or RESULTS / ("bench_calibration.json" if args.model == "digits_resnet" else f"bench_calibration_{args.model}.json")
    counts = [args.samples] + ([args.scale_samples] if args.scale_samples else [])
    with tempfile.TemporaryDirectory() as folder:
        model_path, data = prepare(Path(folder), args.model, counts)
        results = {side: measure(side, model_path, data[args.samples], args) for side in SIDES}
        scaled = {side: run_isolated(side, model_path, data[args.scale_samples], args, False) for side in SIDES if args.scale_samples}
    document = {
        "summary": summarise(results, scaled, args),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version()},
        "results": {side: {k: v for k, v in r.items() if k != "ranges"} for side, r in results.items()},
        "results_at_scale_samples": {side: {k: v for k, v in r.items() if k != "ranges"} for side, r in scaled.items()},
        "ranges": {side: r["ranges"] for side, r in results.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    print(json.dumps(document["summary"], indent=1))
    print(json.dumps({k: document[k] for k in ("results", "results_at_scale_samples")}, indent=1))


def _peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``): ``ru_maxrss`` starts from the parent's RSS at fork, which
    put both sides at the parent's 425 MB (digits) and 1.4 GB (224×224 images) before this was read."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main()
