"""Which pipeline to run on a model: its family from the graph, the ops that matter, the CPU.

The rules are short on purpose; each recommended pass carries the reason it was chosen, and a
pass that is not registered in this installation is left out with a reason instead of suggested.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import shlex
from pathlib import Path

import onnx_ir as ir

from onnxcompress import runtime, spec, stats
from onnxcompress.errors import UsageError
from onnxcompress.passes import REGISTRY
from onnxcompress.passes.pruning.rules.conv import is_depthwise_conv

FAMILIES = ("cnn", "mobile-cnn", "transformer-encoder", "decoder", "mlp", "other")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "i8mm")
DECODER_NAME = re.compile(r"past|present|cache", re.IGNORECASE)


@dataclasses.dataclass
class CpuFeatures:
    """The CPU facts that decide whether INT8 pays: architecture and its int8 dot-product flags."""

    arch: str
    flags: frozenset[str]

    @property
    def int8_level(self) -> str:
        """"vnni" (int8 dot product), "avx2" (int8 via 16-bit madd), "arm-dot", or "none"."""
        if self.flags & {"avx512_vnni", "avx_vnni"}:
            return "vnni"
        if self.flags & {"asimddp", "i8mm"}:
            return "arm-dot"
        if "avx2" in self.flags:
            return "avx2"
        return "none"


@dataclasses.dataclass
class Step:
    """One recommended pass spec and why."""

    spec: str
    reason: str


@dataclasses.dataclass
class Recommendation:
    """The family found, the evidence, the CPU, and the ordered steps."""

    family: str
    evidence: list[str]
    cpu: CpuFeatures
    steps: list[Step]
    skipped: list[str]
    input_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # dynamic inputs, as measured

    def command(self, model: str | Path, output: str | Path) -> str:
        """The ``onnxcompress run`` command line for these steps, pinning the dynamic dims it measures at."""
        passes = " ".join(f"-p {shlex.quote(s.spec)}" for s in self.steps)
        calibration = " --calibration DATA" if any(spec.parse_pass(s.spec).calibration_need() for s in self.steps) else ""
        shapes = f" {runtime.describe_shapes(self.input_shapes)}" if self.input_shapes else ""
        return f"onnxcompress run {shlex.quote(str(model))} -o {shlex.quote(str(output))} {passes}{calibration}{shapes} --report report"


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
    """Architecture and flags of this machine (``/proc/cpuinfo``; empty flags when unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    match = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    return CpuFeatures(platform.machine() or "unknown", frozenset(match.group(1).split()) if match else frozenset())


def detect_family(model: ir.Model) -> tuple[str, list[str]]:
    """The model family and the facts that decided it."""
    ops = stats.model_stats(model).op_histogram
    names = [v.name or "" for v in (*model.graph.inputs, *model.graph.outputs)]
    attention = ops.get("Softmax", 0) and ops.get("MatMul", 0) >= 2
    if ops.get("Trilu") or any(DECODER_NAME.search(n) for n in names):
        cache = [n for n in names if DECODER_NAME.search(n)]
        return "decoder", [f"causal mask (Trilu x{ops.get('Trilu', 0)})" if ops.get("Trilu") else f"key/value cache I/O {cache[:3]}"]
    if attention:
        norms = ops.get("LayerNormalization", 0) + ops.get("ReduceMean", 0)
        return "transformer-encoder", [f"attention: Softmax x{ops['Softmax']}, MatMul x{ops['MatMul']}", f"normalisation ops x{norms}"]
    if ops.get("Conv"):
        depthwise = sum(map(is_depthwise_conv, model.graph))
        if depthwise:
            return "mobile-cnn", [f"Conv x{ops['Conv']}", f"depthwise Conv x{depthwise}"]
        return "cnn", [f"Conv x{ops['Conv']}"]
    dense = ops.get("Gemm", 0) + ops.get("MatMul", 0)
    if dense:
        return "mlp", [f"dense layers (Gemm/MatMul) x{dense}, no Conv or attention"]
    return "other", [f"top ops: {', '.join(list(ops)[:5]) or 'none'}"]


def recommend(model: ir.Model, cpu: CpuFeatures | None = None) -> Recommendation:
    """The recommended pipeline for ``model`` on ``cpu`` (this machine by default)."""
    cpu = cpu or cpu_features()
    family, evidence = detect_family(model)
    wanted = plan(family, cpu)
    steps = [s for s in wanted if s.spec.split(":")[0] in REGISTRY]
    skipped = [f"{s.spec.split(':')[0]}: not available in this installation" for s in wanted if s not in steps]
    return Recommendation(family, evidence, cpu, steps, skipped, dynamic_input_shapes(model))


def dynamic_input_shapes(model: ir.Model) -> dict[str, tuple[int, ...]]:
    """The shapes synthetic inputs measure the model's dynamic inputs at; none when an input has no shape to start from."""
    try:
        chosen = runtime.input_shapes(model)
    except UsageError:
        return {}
    return {name: chosen[name] for name in runtime.dynamic_inputs(model)}


def plan(family: str, cpu: CpuFeatures) -> list[Step]:
    """Every step the rules want for ``family`` on ``cpu``, whether or not the pass is installed."""
    return _exact_steps(family) + _lossy_steps(family, cpu)


def _exact_steps(family: str) -> list[Step]:
    fuse = Step("fuse", "exact: merges op chains into the fused kernels ORT runs fastest")
    if family in ("transformer-encoder", "decoder"):
        fuse = Step("fuse:opset=23", f"exact; {family}: at opset 23 each attention block becomes one Attention op "
                    "(all-MiniLM-L6-v2 at batch 8: ~10% faster in FP32, 2-10% after dynamic INT8)")
    return [
        Step("fold-constants", "exact: precomputes constant subgraphs so no kernel runs on constants"),
        Step("cleanup", "exact: removes dead nodes, identities and unused initializers"),
        fuse,
    ]


def _lossy_steps(family: str, cpu: CpuFeatures) -> list[Step]:
    if cpu.int8_level == "none" and family not in ("cnn", "mobile-cnn"):
        return []
    int8 = {
        "vnni": "the CPU has VNNI int8 dot products (about 4x the fp32 MACs per cycle)",
        "arm-dot": "the CPU has ARM int8 dot-product instructions",
        "avx2": "the CPU has AVX2 (int8 runs via 16-bit multiply-add, gains are smaller than with VNNI)",
        "none": "",
    }[cpu.int8_level]
    if family in ("cnn", "mobile-cnn"):
        steps = [Step("prune-channels:ratio=0.3", "CNN: removing 30% of conv channels cuts MACs and size; check the accuracy in the report")]
        if cpu.int8_level != "none":
            steps.append(_static_int8_step(family, int8))
        return steps
    if family in ("transformer-encoder", "decoder"):
        return [
            Step("split-outliers", f"{family}: a few FFN channels peak 5-17x the median and ruin per-tensor INT8 activations; "
                 "an FP32 branch for them (exact, needs calibration data) costs no time"),
            Step("smooth", f"{family}: LayerNorm outputs carry outlier channels too; smoothing them into the weights "
                 "(exact, needs calibration data) is chosen per activation where it lowers the INT8 error"),
            Step("scale-tokens", f"{family}: GELU outputs and attention contexts differ in range from token to token; "
                 "one INT8 scale per token where the simulated error falls most (exact, needs calibration data); "
                 "all-MiniLM-L6-v2: nearest-neighbour agreement at batch 8 0.946 -> 0.958 for 0.02-0.03x of FP32's time"),
            Step("quantize-dynamic:gptq=true", f"{family}: weights dominate (MatMul/Gemm), activations quantized at run time, "
                 f"weights rounded with error feedback; {int8}. On all-MiniLM-L6-v2 the four steps keep embedding cosine "
                 "0.9995 against 0.993 for plain dynamic INT8"),
        ]
    if family == "mlp":
        return [Step("quantize-dynamic", f"{family}: weights dominate (MatMul/Gemm), dynamic INT8 needs no calibration; {int8}")]
    return []


def _static_int8_step(family: str, int8: str) -> Step:
    if family == "cnn":
        return Step("quantize-static", f"CNN: static INT8 keeps convolutions in QLinear form; {int8}; needs calibration data")
    return Step("quantize-static:fp32_prefix=fastest",
                f"mobile CNN: static INT8; {int8}; needs calibration data. Depthwise convs and hard-swish near the input "
                "cost int8 more than they save, so the fastest FP32 prefix is measured and kept (MobileNetV3-Large "
                "layout trained on digits: 0.82-0.86x FP32 at batch 1, against 0.89-0.93x fully INT8)")
