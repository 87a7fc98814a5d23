"""INT8 quantization benchmark: onnxcompress's passes side by side with ORT's quantizers, in one run.

Models: the digits CNN, a MobileNetV3-style net and MobileNetV3-Large's layout trained on digits at
224x224, a PP-OCR-detector-shaped net trained to mark the digits' ink (all trained here, cached under
tools/results/tmp/), a ResNet-18-layout net, a
MobileNetV3-style toy net (depthwise, hard-swish, squeeze-excite, at most 120 channels; at 96x96 and 224x224),
MobileNetV3-Large's layout at 224x224 (the size of real mobile backbones) and all-MiniLM-L6-v2 at sequence 128.
Anchors: ORT ``quantize_static`` (its defaults: S8S8 per-tensor; and U8S8 per-channel),
``quantize_dynamic``, and for MiniLM the ORT transformers optimizer + ``quantize_dynamic``
per-channel. Latency is ORT CPU at ENABLE_ALL, batch 1 and 8, every variant of a model measured
in the same alternating rounds as its FP32 model (``onnxcompress.bench.measure``). Each model runs
in a fresh process, so no case inherits another's memory state. In one run the trained mobile net's
FP32 model read 1.50 ms at batch 1 after the other cases, and 0.90 ms alone. Fresh processes did not
stop whole cases from sometimes running 1.3–1.7× slower; see the README.

    python tools/bench_quantization.py [--only digits,resnet18,mobilenet,mobilenet224,mobilenet_digits,mobilenetv3_large,mobilenetv3_large_digits,mask_detector,minilm] [--rounds 5]

Writes docs/benchmarks/bench_quantization.md and tools/results/bench_quantization.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxcompress import bench, io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.markdown import table as markdown_table
from onnxcompress.passes import (
    Cleanup, FoldConstants, Fuse, QuantizeDynamic, QuantizeStatic, ScaleTokens, SmoothActivations, SplitOutlierChannels,
)
from onnxcompress.passes.quantization.support.unfused import unfused_after_ort
from onnxcompress.pipeline import LabelledData

ROOT = Path(__file__).resolve().parents[1]
TMP = ROOT / "tools" / "results" / "tmp"
JSON_OUT = ROOT / "tools" / "results" / "bench_quantization.json"
DOC_OUT = ROOT / "docs" / "benchmarks" / "bench_quantization.md"
CALIBRATION_SAMPLES = 200
CALIBRATION_BATCH = 8  # memory of one calibration batch of activations (all tensors exposed at once)
MINILM_SEQ = 128
MINILM_SENTENCES = 250
MINILM_CALIBRATION = 512
MINILM_EXTRA_SETS = 4  # more disjoint sets of MINILM_SENTENCES held-out sentences: how much agreement moves by set
NEAR_TIE_MARGIN = 0.003
DIGITS_TRAINING = (6, 3e-3, 64)  # epochs, learning rate, batch size
MOBILENET_DIGITS_TRAINING = (8, 2e-3, 16)  # ~5 min on 2 cores; test accuracy 0.86
MASK_SIZE, MASK_STRIDE = 224, 4
MASK_TRAINING = (5, 2e-3, 16)  # ~5 min on 2 cores


@dataclasses.dataclass
class Case:
    """One FP32 model, its quantized variants, feeds per batch size, and how to judge a variant."""

    name: str
    fp32: ir.Model
    feeds: dict[int, dict[str, np.ndarray]]
    quality: Callable[[ir.Model], dict]
    variants: dict[str, ir.Model] = dataclasses.field(default_factory=dict)
    notes: dict[str, list[str]] = dataclasses.field(default_factory=dict)


# --- anchors -------------------------------------------------------------------------------------


def ort_static(model: ir.Model, calibration: dict[str, np.ndarray], *, u8s8_per_channel: bool) -> ir.Model:
    """ORT ``quantize_static`` in QDQ: its defaults (S8S8 per-tensor) or U8S8 per-channel."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(ArrayReader(calibration, batch_size=8).batches())

        def get_next(self):
            return next(self.batches, None)

    options = {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8, "per_channel": True} if u8s8_per_channel else {}
    return _through_files(model, lambda src, dst: quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, **options))


def ort_dynamic(model: ir.Model, *, per_channel: bool) -> ir.Model:
    """ORT ``quantize_dynamic`` (S8 weights), with the ``DefaultTensorType`` it needs on contrib-op graphs."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    return _through_files(model, lambda src, dst: quantize_dynamic(src, dst, per_channel=per_channel, extra_options=extra))


def ort_transformers_fused(model: ir.Model) -> ir.Model:
    """ORT's transformers optimizer (BERT fusions: Attention, SkipLayerNorm, BiasGelu, EmbedLayerNorm)."""
    from onnxruntime.transformers.optimizer import optimize_model

    def optimize(src: str, dst: str) -> None:
        optimize_model(src, model_type="bert", num_heads=12, hidden_size=384).save_model_to_file(dst)

    return _through_files(model, optimize)


def _through_files(model: ir.Model, tool: Callable[[str, str], None]) -> ir.Model:
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        io.save(model, src)
        tool(str(src), str(dst))
        return io.load(dst)


# --- ours ----------------------------------------------------------------------------------------


def ours(case: Case, label: str, model: ir.Model, *passes, calibration: ArrayReader | None = None,
         labelled: LabelledData | None = None) -> None:
    """Apply ``passes`` to a copy of ``model`` with ``calibration`` and ``labelled`` data and add it as a variant,
    keeping the passes' notes."""
    model = io.clone(model)
    lines = []
    for pass_ in passes:
        outcome = pass_.apply(model, calibration=calibration, labelled=labelled)
        lines += [f"{pass_.name}: {n}" for n in outcome.notes]
    case.variants[label] = model
    case.notes[label] = lines


def standard_fusions(model: ir.Model, opset: int | None = None) -> ir.Model:
    """fold-constants → cleanup → fuse[:opset] → cleanup on a copy (standard ONNX ops only)."""
    model = io.clone(model)
    for pass_ in (FoldConstants(), Cleanup(), Fuse(opset=opset), Cleanup()):
        pass_(model)
    return model


# --- cases ---------------------------------------------------------------------------------------


def export_cached(name: str, build: Callable[[], object], chw: tuple[int, int, int]) -> ir.Model:
    """The torch module from ``build`` exported once to tools/results/tmp/<name>.onnx."""
    path = TMP / f"{name}.onnx"
    if not path.exists():
        import torch

        from onnxcompress.models.export import export_onnx

        TMP.mkdir(parents=True, exist_ok=True)
        export_onnx(build(), path, (torch.zeros(1, *chw),), input_names=["x"], output_names=["logits"])
    return io.load(path)


def trained_on_digits(build: Callable[[], object], size: int, recipe: tuple[int, float, int], *,
                      targets: Callable[[object], np.ndarray] | None = None, loss_fn: Callable | None = None) -> Callable[[], object]:
    """A builder training ``build()``'s module on the digits split at ``size``×``size`` with ``(epochs, lr, batch)``
    (deterministic), on the labels or on ``targets(split)`` with ``loss_fn``."""

    def train():
        from onnxcompress.models import digits, training

        split = digits.load_split(size=size)
        module = build()
        epochs, lr, batch = recipe
        wanted = split.y_train if targets is None else targets(split)
        training.fit(module, split.x_train, wanted, epochs=epochs, lr=lr, batch_size=batch, seed=0, loss_fn=loss_fn)
        return module.eval()

    return train


def static_int8(case: Case, label: str, model: ir.Model, calibration: dict[str, np.ndarray], labelled: LabelledData | None = None,
                **options) -> None:
    """Our ``quantize-static`` with ``options`` as a variant, calibrated on ``calibration`` in batches of ``CALIBRATION_BATCH``."""
    ours(case, label, model, QuantizeStatic(**options), calibration=ArrayReader(calibration, batch_size=CALIBRATION_BATCH), labelled=labelled)


def digits_case(label: str, name: str, build: Callable[[], object], size: int, recipe: tuple[int, float, int],
                float_stages: list[str] | None = None) -> Case:
    """A CNN trained on digits: accuracy on the test split; fallback judged on labelled held-out training images;
    with ``float_stages`` (``exclude`` patterns, for mobile nets) also a variant keeping those stages in FP32,
    one choosing its FP32 prefix by measuring (``fp32_prefix``) and one without depthwise padding (what
    ``pad_depthwise`` buys, measured in the same rounds)."""
    from onnxcompress.models import digits

    split = digits.load_split(size=size)
    fp32 = export_cached(name, trained_on_digits(build, size, recipe), (1, size, size))
    calibration = {"x": split.x_train[:CALIBRATION_SAMPLES]}
    test = LabelledData({"x": split.x_test}, split.y_test)
    held_out = LabelledData({"x": split.x_train[-300:]}, split.y_train[-300:])
    base = test.accuracy(fp32, runtime.DEFAULT_THREADS)

    def quality(model: ir.Model) -> dict:
        accuracy = test.accuracy(model, runtime.DEFAULT_THREADS)
        return {"accuracy": accuracy, "accuracy_drop_points": 100 * (base - accuracy)}

    case = Case(label, fp32, _image_feeds(split.x_test), quality)
    _cnn_variants(case, calibration)
    static_int8(case, "onnxcompress static + fallback (max_drop 0.5 pt)", fp32, calibration, labelled=held_out, max_drop=0.005)
    if float_stages:
        static_int8(case, f"onnxcompress static, {' '.join(float_stages)} kept in FP32 (exclude)", fp32, calibration,
                    exclude=float_stages)
        static_int8(case, "onnxcompress quantize-static, FP32 prefix measured (fp32_prefix=fastest)", fp32, calibration,
                    fp32_prefix="fastest")
        static_int8(case, "onnxcompress quantize-static without depthwise padding (pad_depthwise=false)", fp32, calibration,
                    pad_depthwise=False)
    return case


def ink_masks(images: np.ndarray, stride: int) -> np.ndarray:
    """Where each digit has ink (mean brightness over a ``stride``×``stride`` cell above one half): a text mask."""
    n, c, h, w = images.shape
    cells = images.reshape(n, c, h // stride, stride, w // stride, stride).mean(axis=(3, 5))
    return (cells > 0.5).astype(np.float32)


def digits_mask_case() -> Case:
    """A PP-OCR-detector-shaped net (MobileNetV3-Large backbone, upsampling neck) trained to mark the ink of
    224×224 digits at stride 4; judged by mask IoU against FP32's mask and against the true ink."""
    import torch

    from onnxcompress.models import digits, vision

    split = digits.load_split(size=MASK_SIZE)
    truth = ink_masks(split.x_test, MASK_STRIDE)

    train = trained_on_digits(lambda: vision.mobilenetv3_mask_detector(in_channels=1), MASK_SIZE, MASK_TRAINING,
                              targets=lambda split: ink_masks(split.x_train, MASK_STRIDE),
                              loss_fn=torch.nn.functional.binary_cross_entropy_with_logits)
    fp32 = export_cached("mobilenetv3_mask_detector_digits224", train, (1, MASK_SIZE, MASK_SIZE))
    expected = runtime.run(fp32, {"x": split.x_test})["logits"] > 0

    def quality(model: ir.Model) -> dict:
        got = runtime.run(model, {"x": split.x_test})["logits"] > 0
        return {"mask_iou_vs_fp32": _iou(got, expected), "mask_iou_vs_ink": _iou(got, truth > 0)}

    case = Case("MobileNetV3-Large text-mask detector trained on digits (1x224x224)", fp32, _image_feeds(split.x_test), quality)
    calibration = {"x": split.x_train[:CALIBRATION_SAMPLES]}
    static_int8(case, "onnxcompress quantize-static (CPU default)", fp32, calibration)
    static_int8(case, "onnxcompress quantize-static, FP32 prefix measured (fp32_prefix=fastest)", fp32, calibration,
                fp32_prefix="fastest")
    case.variants["ORT quantize_static default (S8S8 per-tensor)"] = ort_static(fp32, calibration, u8s8_per_channel=False)
    case.variants["ORT quantize_static U8S8 per-channel"] = ort_static(fp32, calibration, u8s8_per_channel=True)
    return case


def _iou(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.logical_and(got, expected).sum() / max(np.logical_or(got, expected).sum(), 1))


def synthetic_cnn_case(name: str, build: Callable[[], object], chw: tuple[int, int, int]) -> Case:
    """An untrained CNN (BatchNorm statistics from random images): top-1 agreement and logit cosine against FP32 on random images."""
    fp32 = export_cached(name, build, chw)
    rng = np.random.default_rng(0)
    calibration = {"x": rng.normal(size=(64, *chw)).astype(np.float32)}
    evaluation = {"x": rng.normal(size=(64, *chw)).astype(np.float32)}
    expected = runtime.run(fp32, evaluation)["logits"]

    def quality(model: ir.Model) -> dict:
        got = runtime.run(model, evaluation)["logits"]
        return {"top1_agreement": float(np.mean(got.argmax(1) == expected.argmax(1))), **_cosines(expected, got)}

    case = Case(name, fp32, _image_feeds(evaluation["x"]), quality)
    _cnn_variants(case, calibration)
    return case


def _cnn_variants(case: Case, calibration: dict[str, np.ndarray]) -> None:
    static_int8(case, "onnxcompress quantize-static (CPU default)", case.fp32, calibration)
    case.variants["ORT quantize_static default (S8S8 per-tensor)"] = ort_static(case.fp32, calibration, u8s8_per_channel=False)
    case.variants["ORT quantize_static U8S8 per-channel"] = ort_static(case.fp32, calibration, u8s8_per_channel=True)
    case.variants["ORT quantize_dynamic"] = ort_dynamic(case.fp32, per_channel=False)


def _image_feeds(images: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    return {b: {"x": np.ascontiguousarray(images[:b])} for b in (1, 8)}


def minilm_case() -> Case:
    """MiniLM at sequence 128: embedding fidelity on 250 real sentences (run one at a time and in batches of 8,
    since dynamic INT8 scales depend on the batch), latency at batch 1 and 8. Nearest-neighbour agreement
    is also given as mean and min over that set and four more disjoint sets of 250 held-out sentences,
    since one set's near-ties move it by about ±0.02."""
    from onnxcompress.models import corpus, minilm

    path = TMP / "minilm.onnx"
    if not path.exists():
        TMP.mkdir(parents=True, exist_ok=True)
        minilm.export_minilm(path)
    fp32 = io.load(path)
    held_out = MINILM_SENTENCES + MINILM_CALIBRATION
    tokens = minilm.tokenize(corpus.sentences(held_out + MINILM_EXTRA_SETS * MINILM_SENTENCES, seed=0), max_length=MINILM_SEQ, pad_to=MINILM_SEQ)
    calibration = ArrayReader({k: v[MINILM_SENTENCES:held_out] for k, v in tokens.items()}, batch_size=64)
    sets = [{k: v[start:start + MINILM_SENTENCES] for k, v in tokens.items()}
            for start in [0, *range(held_out, held_out + MINILM_EXTRA_SETS * MINILM_SENTENCES, MINILM_SENTENCES)]]
    expected_sets = [_embeddings(fp32, one_set, batch=1) for one_set in sets]
    expected = expected_sets[0]  # the first set is the 250 sentences every column but nn_5sets_* is judged on

    def quality(model: ir.Model) -> dict:
        got = {b: [_embeddings(model, one_set, batch=b) for one_set in sets] for b in (1, 8)}
        per_set = {b: [_nn_agreement(e, g) for e, g in zip(expected_sets, got[b])] for b in (1, 8)}
        return {**_cosines(expected, got[1][0]), "nn_agreement": per_set[1][0],
                "mean_cosine_b8": _cosines(expected, got[8][0])["mean_cosine"], "nn_agreement_b8": per_set[8][0],
                **{f"nn_{len(sets)}sets_b{b}_mean": float(np.mean(v)) for b, v in per_set.items()},
                **{f"nn_{len(sets)}sets_b{b}_min": float(np.min(v)) for b, v in per_set.items()}}

    case = Case(f"all-MiniLM-L6-v2 (seq {MINILM_SEQ})", fp32, {b: {k: v[:b] for k, v in tokens.items()} for b in (1, 8)}, quality)
    case.notes["FP32"] = [f"{_near_ties(expected)} of {MINILM_SENTENCES} sentences have their two nearest neighbours within "
                          f"{NEAR_TIE_MARGIN} cosine of each other: any perturbation of that size can swap them"]
    ort_fused = ort_transformers_fused(fp32)
    case.variants["ORT quantize_dynamic per-channel"] = ort_dynamic(fp32, per_channel=True)
    case.variants["ORT transformers optimizer + quantize_dynamic per-channel"] = ort_dynamic(ort_fused, per_channel=True)
    fused = standard_fusions(fp32)
    ours(case, "onnxcompress fuse + quantize-dynamic", fused, QuantizeDynamic())
    ours(case, "onnxcompress fuse + smooth + quantize-dynamic", fused, SmoothActivations(), QuantizeDynamic(), calibration=calibration)
    ours(case, "onnxcompress fuse + split-outliers + smooth + quantize-dynamic:gptq", fused, SplitOutlierChannels(),
         SmoothActivations(), QuantizeDynamic(gptq=True), calibration=calibration)
    ours(case, "onnxcompress fuse + split-outliers + smooth + quantize-dynamic:gptq,activation_scales=calibrated", fused,
         SplitOutlierChannels(), SmoothActivations(), QuantizeDynamic(gptq=True, activation_scales="calibrated"), calibration=calibration)
    attention = standard_fusions(fp32, opset=23)
    ours(case, "onnxcompress fuse:opset=23 + split-outliers + smooth + quantize-dynamic:gptq", attention,
         SplitOutlierChannels(), SmoothActivations(), QuantizeDynamic(gptq=True), calibration=calibration)
    ours(case, "onnxcompress fuse:opset=23 + split-outliers + smooth + scale-tokens + quantize-dynamic:gptq", attention,
         SplitOutlierChannels(), SmoothActivations(), ScaleTokens(), QuantizeDynamic(gptq=True), calibration=calibration)
    ours(case, "onnxcompress fuse:opset=23 + split-outliers + smooth + scale-tokens + quantize-dynamic:gptq,activation_scales=calibrated",
         attention, SplitOutlierChannels(), SmoothActivations(), ScaleTokens(), QuantizeDynamic(gptq=True, activation_scales="calibrated"),
         calibration=calibration)
    return case


def _embeddings(model: ir.Model, tokens: dict[str, np.ndarray], batch: int) -> np.ndarray:
    sess = runtime.session(model)
    count = len(next(iter(tokens.values())))
    return np.concatenate([
        runtime.run(sess, {k: v[i:i + batch] for k, v in tokens.items()})["sentence_embedding"] for i in range(0, count, batch)
    ])


def _nn_agreement(expected: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean(_neighbours(got) == _neighbours(expected)))


def _near_ties(embeddings: np.ndarray) -> int:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    top_two = np.sort(similarity, axis=1)[:, -2:]
    return int(np.sum(top_two[:, 1] - top_two[:, 0] < NEAR_TIE_MARGIN))


def _cosines(expected: np.ndarray, got: np.ndarray) -> dict:
    e, g = expected.reshape(len(expected), -1), got.reshape(len(got), -1)
    cos = (e * g).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(g, axis=1))
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def _neighbours(embeddings: np.ndarray) -> np.ndarray:
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(1)


CASES: dict[str, Callable[[], Case]] = {
    "digits": lambda: digits_case("digits CNN (1x32x32)", "digits_resnet", lambda: _factory("digits_resnet")(), 32, DIGITS_TRAINING),
    "mobilenet_digits": lambda: digits_case(
        "MobileNetV3-style trained on digits (1x224x224)", "mobilenetv3_style_digits224",
        lambda: _factory("mobilenetv3_style")(num_classes=10, in_channels=1), 224, MOBILENET_DIGITS_TRAINING,
        float_stages=["/0/*", "/1/*"]),  # the stem and first block at 112x112, where int8's element-wise ops cost most
    "mobilenetv3_large_digits": lambda: digits_case(
        "MobileNetV3-Large layout trained on digits (1x224x224)", "mobilenetv3_large_digits224",
        lambda: _factory("mobilenetv3_large_layout")(num_classes=10, in_channels=1), 224, MOBILENET_DIGITS_TRAINING,
        float_stages=["/0/*", "/1/*"]),  # a real backbone's widths with trained weights: ~5 min of training, test accuracy 0.992
    "mask_detector": digits_mask_case,
    "resnet18": lambda: synthetic_cnn_case("resnet18_layout_bn", lambda: _vision("resnet18_layout", (3, 128, 128), num_classes=1000), (3, 128, 128)),
    "mobilenet": lambda: synthetic_cnn_case("mobilenetv3_style_bn", lambda: _vision("mobilenetv3_style", (3, 96, 96)), (3, 96, 96)),
    "mobilenet224": lambda: synthetic_cnn_case("mobilenetv3_style_224_bn", lambda: _vision("mobilenetv3_style", (3, 224, 224)), (3, 224, 224)),
    "mobilenetv3_large": lambda: synthetic_cnn_case(
        "mobilenetv3_large_layout_224", lambda: _vision("mobilenetv3_large_layout", (3, 224, 224)), (3, 224, 224)),
    "minilm": minilm_case,
}


def _factory(name: str) -> Callable[..., object]:
    from onnxcompress.models import vision

    return getattr(vision, name)


def _vision(factory: str, chw: tuple[int, int, int], **kwargs):
    """An untrained reference net whose BatchNorm statistics come from random ``chw`` images (so its logits vary)."""
    from onnxcompress.models import vision

    return vision.with_batch_statistics(_factory(factory)(**kwargs), chw)


# --- measuring and writing -----------------------------------------------------------------------


def measure_case(case: Case, rounds: int) -> list[dict]:
    """Quality, unfused Q/DQ and batch-1/8 latency (as ratios to FP32 in the same run) of every variant."""
    models = {"FP32": case.fp32, **case.variants}
    rows = [{"variant": label, **case.quality(model), "notes": case.notes.get(label, []),
             "unfused_qdq": unfused_after_ort(io.to_proto(model)).count} for label, model in models.items()]
    for batch, feeds in case.feeds.items():
        sessions = bench.sessions(list(models.values()))
        latencies = bench.measure(sessions, [feeds] * len(sessions), batch=batch, rounds=rounds)
        for row, latency in zip(rows, latencies):
            row[f"b{batch}_ms"] = latency.median_ms
            row[f"b{batch}_ratio"] = latency.median_ms / latencies[0].median_ms
            row[f"b{batch}_clean_rounds"] = latency.rounds_kept
    return rows


def markdown(results: dict[str, list[dict]], seconds: float) -> str:
    """The results as a Markdown page."""
    lines = ["# INT8 quantization: onnxcompress vs ONNX Runtime's quantizers", "",
             f"Generated by `tools/bench_quantization.py` ({seconds:.0f} s of runs in total) on {platform.machine()}, "
             f"ORT CPU EP at ENABLE_ALL, {runtime.DEFAULT_THREADS} threads. Latency ratios are to FP32 measured in the same "
             "alternating rounds (lower is faster); `clean` = rounds kept on a quiet machine (0 means every round was "
             "disturbed by other processes and the figures are noisy). Each model runs in a process of its own; "
             "from one run to the next a small net's ratios still move by up to about 0.1.", ""]
    for name, rows in results.items():
        quality_keys = [k for k in rows[0] if k not in {"variant", "notes", "unfused_qdq"} and not k.startswith("b")]
        header = ["variant", *quality_keys, "unfused Q/DQ", "b1 ms", "b1 ratio", "b8 ms", "b8 ratio", "clean b1/b8"]
        lines += [f"## {name}", "", *markdown_table(header, (
            [r["variant"], *(f"{r[k]:.4f}" for k in quality_keys), r["unfused_qdq"], f"{r['b1_ms']:.2f}", f"{r['b1_ratio']:.2f}",
             f"{r['b8_ms']:.2f}", f"{r['b8_ratio']:.2f}", f"{r['b1_clean_rounds']}/{r['b8_clean_rounds']}"] for r in rows))]
        lines += [""] + [f"- {r['variant']} — {n}" for r in rows for n in r["notes"]] + [""]
    return "\n".join(lines)


def main() -> None:
    """Run the chosen cases and write the JSON and Markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    keys = args.only.split(",")
    unknown = sorted(set(keys) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if len(keys) > 1:
        for key in keys:
            subprocess.run([sys.executable, __file__, "--only", key, "--rounds", str(args.rounds)], check=True)
        return
    start = time.perf_counter()
    case = CASES[keys[0]]()
    results = {case.name: measure_case(case, args.rounds)}
    print(json.dumps(results, indent=1, default=str), flush=True)
    write_results(results, time.perf_counter() - start)


def write_results(results: dict[str, list[dict]], seconds: float) -> None:
    """Merge ``results`` into the JSON file (a run with ``--only`` replaces just its models) and rewrite the page."""
    previous = json.loads(JSON_OUT.read_text()) if JSON_OUT.exists() else {"seconds": 0.0, "results": {}}
    merged = {**previous["results"], **results}
    total = previous["seconds"] + seconds
    JSON_OUT.write_text(json.dumps({"seconds": total, "results": merged}, indent=1) + "\n")
    DOC_OUT.write_text(markdown(merged, total) + "\n")


if __name__ == "__main__":
    main()
