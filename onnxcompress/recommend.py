"""Which pipeline to run on a model: its family from the graph, the ops that matter, the CPU — proven on the model.

The rules are short on purpose; each recommended pass carries the reason it was chosen, and a
pass that is not registered in this installation is left out with a reason instead of suggested.

``prove`` then runs the candidate chain step by step on the user's model, in-process through the
``Pipeline`` (its checks, no benchmark per pass), judges each step's result against the input with
the default fidelity budget of the lossy passes (``onnxcompress.passes.budget``: held-out
calibration samples, or labelled samples, else synthetic inputs, which cannot judge the model's
task) and times it side by side with the chain before it (a few rounds of ``bench.measure``). A step
that fails, breaks the budget or makes the model slower is dropped with a one-line reason, and the
steps after it run on the chain without it, so the command printed is the chain that ran. Pruning
that breaks the budget alone is tried again followed by ``recover`` (training by distillation from
the input on the calibration data) and kept when the two hold it together. Without labels, pruning
is held to ``UNLABELLED_PRUNING_MAX_ERROR``, half the default slice error: it changes what the model
computes beyond rounding, and at the default the task lost more than labels would allow.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import bench, generation, io, runtime, spec, stats
from onnxcompress.cpu import CpuFeatures, cpu_features
from onnxcompress.synthetic_inputs import check_pinned_names
from onnxcompress.calibration import as_reader
from onnxcompress.calibration.holdout import check_samples
from onnxcompress.errors import CheckFailed, UsageError, first_line
from onnxcompress.fidelity import CLASS_SCORES
from onnxcompress.passes import budget as fidelity_budget
from onnxcompress.passes.pruning.rules.conv import is_depthwise_conv
from onnxcompress.passes.remove_initializer_inputs import initializer_inputs, weights_as_inputs
from onnxcompress.passes.upcast import half_precision_weights
from onnxcompress.passes.values import RESHAPING, is_constant
from onnxcompress.pipeline import Measurement, Pipeline

FAMILIES = ("cnn", "mobile-cnn", "transformer-encoder", "decoder", "recurrent", "mlp", "other")
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "i8mm")
DECODER_NAME = re.compile(r"past|present|cache", re.IGNORECASE)
POSITION_COMPARISONS = ("Less", "LessOrEqual", "Greater", "GreaterOrEqual")
POSITION_CARRIERS = ("Unsqueeze", "Squeeze", "Reshape", "Cast", "Expand", "Slice", "Add", "Sub", "Identity")
RANGE_DEPTH = 6
# LayerNorm as exporters write it (whole or decomposed around ReduceMean) and as ORT's transformer optimizer fuses it
# (op histogram keys: other domains' ops are named with theirs)
NORMALISATIONS = ("LayerNormalization", "ReduceMean", "SimplifiedLayerNormalization", "com.microsoft::SkipLayerNormalization",
                  "com.microsoft::EmbedLayerNormalization", "com.microsoft::SkipSimplifiedLayerNormalization")
PROOF_ROUNDS = 3
PROOF_ROUND_SECONDS = 0.05
CONFIRM_ROUNDS = 7
CONFIRM_ROUND_SECONDS = 0.2
SLOWER_MARGIN = 0.05  # wider than the pipeline's: a few short rounds are noisier than its benchmark
MIN_GAIN = 0.05  # the whole chain must be this much faster, in the full measurement: ties read up to ±3 % apart
UNCHANGED = "nothing to do on this model: it came out as it went in"
# Without labels, pruning is judged at half the default slice error: at 0.29 the digits teacher (pruned 30 % + recovered)
# lost 1.9 points of top-1, at 0.38 captcha-whisperer's CRNN 5.5 points of captchas decoded right, where labels allow 1.
UNLABELLED_PRUNING_MAX_ERROR = 0.25
# Tried after a pruning step that breaks the budget alone (needs torch and data). On the demo's digits teacher
# recover's default lr 1e-4 over 5 epochs left slice error 0.81; lr 1e-3 over 20 brought it to 0.29 (kept).
RECOVERY = "recover:epochs=20,lr=1e-3,seconds=120"
RECOVERY_REASON = ("the pruned model broke the fidelity budget alone: recover trains its weights back towards the input "
                   "by distillation on the calibration data, and the two held the budget together")

Timer = Callable[..., list[float]]  # (models, feeds, *, full=False) -> median ms of each model


@dataclasses.dataclass
class Step:
    """One recommended pass spec and why; ``recovery``: a pass spec that may follow it when the step alone
    breaks the fidelity budget (``recover`` after pruning), proven together with it; ``without_data``: the step
    tried instead when it needs calibration data and none was given (dynamic INT8 without GPTQ's rounding)."""

    spec: str
    reason: str
    recovery: str | None = None
    without_data: Step | None = None


@dataclasses.dataclass
class Check:
    """One candidate step as run on the model: kept or dropped and why, its result's fidelity against the input
    (``{metric: value}``) and its speed against the chain before it (None when it was not timed)."""

    spec: str
    kept: bool
    reason: str
    fidelity: dict[str, float] = dataclasses.field(default_factory=dict)
    speedup: float | None = None


@dataclasses.dataclass
class Proof:
    """What ``prove`` checked on the model: the budget and what it was judged on, every step, and the kept chain's
    fidelity and latency against the input."""

    judged_on: str
    task_checked: bool  # False when only synthetic inputs were available
    budget: dict[str, float]
    checks: list[Check]
    fidelity: dict[str, float]
    where: str
    latency_ms: dict[str, float]
    latency_on: str
    unseen: str | None = None  # a lossy chain's changed labels held at 0 on too few samples to be sure (``budget.unseen_changes``)

    @property
    def dropped(self) -> list[Check]:
        """The steps left out of the chain."""
        return [c for c in self.checks if not c.kept]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**dataclasses.asdict(self), "speedup": self.speedup}

    @property
    def speedup(self) -> float:
        """The input's latency over the kept chain's."""
        return self.latency_ms["input"] / self.latency_ms["chain"]


@dataclasses.dataclass
class Recommendation:
    """The family found, the evidence, the CPU, the ordered steps and, once proven on the model, the proof."""

    family: str
    evidence: list[str]
    cpu: CpuFeatures
    steps: list[Step]
    skipped: list[str]
    input_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # dynamic inputs, as measured
    proof: Proof | None = None

    def command(self, model: str | Path, output: str | Path, *, calibration: str | Path | None = None,
                labels: str | Path | None = None) -> str | None:
        """The ``onnxcompress run`` command line for these steps (None when there is none), with the data they were
        proven on (``DATA`` where a step needs calibration and none was given) and, without calibration data (which
        ``run`` checks on), the dynamic dims its synthetic inputs take."""
        if not self.steps:
            return None
        passes = " ".join(f"-p {shlex.quote(s.spec)}" for s in self.steps)
        needed = any(spec.parse_pass(s.spec).calibration_need() for s in self.steps)
        data = f" --calibration {shlex.quote(str(calibration))}" if calibration is not None else " --calibration DATA" if needed else ""
        data += f" --labels {shlex.quote(str(labels))}" if labels is not None else ""
        shapes = f" {runtime.describe_shapes(self.input_shapes)}" if self.input_shapes and calibration is None else ""  # else checked on the data
        return f"onnxcompress run {shlex.quote(str(model))} -o {shlex.quote(str(output))} {passes}{data}{shapes} --report report"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the family, CPU, steps, what was left out and what was checked."""
        return {
            "family": self.family, "evidence": self.evidence, "cpu": {"arch": self.cpu.arch, "int8_level": self.cpu.int8_level},
            "steps": [dataclasses.asdict(s) for s in self.steps], "skipped": self.skipped,
            "input_shapes": {name: list(dims) for name, dims in self.input_shapes.items()},
            "proof": self.proof.to_dict() if self.proof is not None else None,
        }


def compares_positions(node: ir.Node) -> bool:
    """Whether ``node`` compares two position ranges (key index <= query index): a causal mask built without ``Trilu``,
    as transformers writes it for Llama-style decoders (a decoder when the model also outputs ``logits``: CLIP's text
    tower masks so too and is an encoder)."""
    return node.op_type in POSITION_COMPARISONS and all(v is not None and _from_range(v) for v in node.inputs)


def _from_range(value: ir.Value, depth: int = 0) -> bool:
    """Whether ``value`` is a ``Range`` seen through a few reshapes, casts and offsets."""
    producer = value.producer()
    if producer is None or depth > RANGE_DEPTH:
        return False
    if producer.op_type == "Range":
        return True
    return producer.op_type in POSITION_CARRIERS and _from_range(producer.inputs[0], depth + 1)


def detect_family(model: ir.Model) -> tuple[str, list[str]]:
    """The model family and the facts that decided it."""
    ops = stats.model_stats(model).op_histogram
    names = [v.name or "" for v in (*model.graph.inputs, *model.graph.outputs)]
    attention = attention_blocks(model)
    causal = sum(map(compares_positions, model.graph)) if any(CLASS_SCORES.search(o.name or "") for o in model.graph.outputs) else 0
    if ops.get("Trilu") or causal or any(DECODER_NAME.search(n) for n in names):
        cache = [n for n in names if DECODER_NAME.search(n)]
        mask = f"causal mask (Trilu x{ops['Trilu']})" if ops.get("Trilu") else f"causal mask (positions compared x{causal})"
        return "decoder", [mask if ops.get("Trilu") or causal else f"key/value cache I/O {cache[:3]}"]
    if attention:
        norms = sum(ops.get(op, 0) for op in NORMALISATIONS)
        return "transformer-encoder", [f"attention: Softmax over activation products x{attention}, MatMul x{ops.get('MatMul', 0)}",
                                       f"normalisation ops x{norms}"]
    recurrent = [f"{op} x{ops[op]}" for op in RECURRENT_OPS if ops.get(op)]
    if recurrent:
        return "recurrent", recurrent
    if ops.get("Conv"):
        depthwise = sum(map(is_depthwise_conv, model.graph))
        if depthwise:
            return "mobile-cnn", [f"Conv x{ops['Conv']}", f"depthwise Conv x{depthwise}"]
        return "cnn", [f"Conv x{ops['Conv']}"]
    dense = ops.get("Gemm", 0) + ops.get("MatMul", 0)
    if dense:
        return "mlp", [f"dense layers (Gemm/MatMul) x{dense}, no Conv or attention"]
    return "other", [f"top ops: {', '.join(list(ops)[:5]) or 'none'}"]


# scale, mask, casts and reshapes between scores and Softmax (tf2onnx writes Keras' attention einsum as a MatMul between
# Reshapes, Squeezed before the scale)
SCORE_OPS = frozenset({"Add", "Mul", "Div", "Sub", "Where", *RESHAPING})


def attention_blocks(model: ir.Model) -> int:
    """Attention blocks: ``Attention`` ops, and Softmaxes over the product of two activations (Q·Kᵀ, reached
    through a scale, a mask or reshapes); a classifier's Softmax over a dense layer (a stored weight) is not one."""
    blocks = sum(node.op_type == "Attention" for node in model.graph)
    for node in model.graph:
        if node.op_type != "Softmax":
            continue
        producer = node.inputs[0].producer() if node.inputs and node.inputs[0] is not None else None
        while producer is not None and producer.op_type in SCORE_OPS:
            first = producer.inputs[0] if producer.inputs else None
            producer = first.producer() if first is not None else None
        if producer is not None and producer.op_type == "MatMul" and all(v is not None and not is_constant(v) for v in producer.inputs):
            blocks += 1
    return blocks


def recommend(model: ir.Model, cpu: CpuFeatures | None = None, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Recommendation:
    """The recommended pipeline for ``model`` on ``cpu`` (this machine by default), to be checked at ``shapes`` (an
    input's whole shape, as ``--input-shape`` pins it; dims it names hold for other inputs too)."""
    cpu = cpu or cpu_features()
    family, evidence = detect_family(model)
    steps = _weights_as_constants(model) + _float32_inside(model) + plan(family, cpu)
    return Recommendation(family, evidence, cpu, steps, [], dynamic_input_shapes(model, shapes))


def _weights_as_constants(model: ir.Model) -> list[Step]:
    """``remove-initializer-inputs`` first when weights are also graph inputs: ORT and every later pass then see constants."""
    exposed = initializer_inputs(model.graph)
    if not exposed:
        return []
    return [Step("remove-initializer-inputs", f"exact: {weights_as_inputs(exposed)}, which ORT neither folds nor pre-packs and the other passes may not "
                 "rewrite; they stop being inputs (exclude=NAME keeps one a caller feeds)")]


def _float32_inside(model: ir.Model) -> list[Step]:
    """``upcast`` first when the model computes in float16 or bfloat16: the INT8 steps take float32 graphs."""
    half = half_precision_weights(model)
    if not half:
        return []
    return [Step("upcast", f"exact: the model computes in {half[0].dtype.name.lower()} ({len(half)} weights), which ORT's "
                 "INT8 quantizers refuse and its CPU provider runs by casting around most nodes; float32 inside, "
                 "the model's inputs and outputs kept as they are")]


def dynamic_input_shapes(model: ir.Model, shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """The shapes synthetic inputs measure the model's dynamic inputs at (``shapes`` pinned); none when an input has
    no shape to start from; pins naming no input are refused in one line."""
    check_pinned_names(model, shapes or {})
    try:
        chosen = runtime.input_shapes(model, shapes=shapes)
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
        steps = [Step("prune-channels:ratio=0.3", "CNN: removing 30% of conv channels cuts MACs and size; check the accuracy in the report",
                      recovery=RECOVERY)]
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
                 f"weights rounded with error feedback; {int8}. On all-MiniLM-L6-v2, after split-outliers, smooth and "
                 "scale-tokens, embedding cosine 0.9995 against 0.993 for plain dynamic INT8",
                 without_data=Step("quantize-dynamic", f"{family}: weights dominate (MatMul/Gemm), activations quantized at run "
                                   f"time; {int8}. Plain dynamic INT8, as no calibration data was given: with it, weights "
                                   "rounded with error feedback after split-outliers, smooth and scale-tokens (all-MiniLM-L6-v2: "
                                   "embedding cosine 0.9995 against 0.993)")),
        ]
    if family == "recurrent":
        return [Step("quantize-dynamic", f"{family}: an LSTM reads its weights at every step; dynamic INT8 (ORT's DynamicQuantizeLSTM) "
                     f"needs no calibration; {int8}. PyTorch's bidirectional 2-layer LSTM of 256 over sentences: 1.87x faster "
                     "at a quarter of the size")]
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


def prove(
    model: ir.Model, rec: Recommendation, *, calibration: Any = None, labelled: Any = None, timer: Timer | None = None,
) -> Recommendation:
    """``rec`` with only the steps that hold on ``model`` (not changed: every step runs on a copy), and the proof.

    Each step runs through a one-pass ``Pipeline`` (its checks, its own budget for a lossy pass) on the
    chain kept so far; its result must keep the default fidelity budget against the input (judged on
    ``labelled`` data, else on calibration samples held out of ``calibration``, else on synthetic
    inputs) and must not be slower than the chain before it (``timer``: side by side, a few rounds, so
    within ``SLOWER_MARGIN``); a step that leaves what the model computes as it was is left out (nothing to
    advise). A step that breaks the budget alone and names a ``recovery`` (pruning: ``recover``) is run again with it, given
    calibration data and PyTorch, and judged and timed together with it. The whole chain
    must then be faster than the input by ``MIN_GAIN`` in the full measurement, or nothing is
    recommended: steps within noise of each other can add up to a slower model. Without
    calibration data, a step that needs it is not run, and a model that synthetic inputs cannot drive
    gets no step. ``calibration`` is in any form ``calibration.as_reader`` takes.
    """
    timer = timer or side_by_side
    if calibration is not None:
        calibration = as_reader(calibration, model)
    try:
        feeds, latency_on = latency_feeds(model, calibration, rec.input_shapes)
        beside = generation.checks_beside(model, feeds)
        latency_on += "".join(f"; and {generation.RUNS[suffix]}" for suffix, _ in beside)
        inputs = feeds if calibration is None else None  # without data, judged at the shapes measured
        budget, _ = fidelity_budget.default_budget(model, calibration=calibration, labelled=labelled, inputs=inputs)
        prunes_unlabelled = labelled is None and any(step.recovery is not None for step in rec.steps)
        pruning_budget = (fidelity_budget.default_budget(model, calibration=calibration, max_error=UNLABELLED_PRUNING_MAX_ERROR,
                                                         inputs=inputs)[0] if prunes_unlabelled else budget)
    except UsageError as exc:
        if calibration is not None or labelled is not None:
            raise
        return dataclasses.replace(rec, steps=[], skipped=[*rec.skipped, f"every step: not run, {exc}; give --calibration DATA"])
    measurement = Measurement(benchmark=False, input_shapes=rec.input_shapes or None, feeds=feeds if calibration is not None else None,
                              labelled=labelled)
    current, checks, kept = io.clone(model), [], []
    current_bytes = computation(io.to_proto(current))  # to tell a step that changed nothing, serialized once per kept step
    for step in rec.steps:
        step = _for_data(step, calibration)
        judge = pruning_budget if step.recovery is not None else budget  # pruning is what recovery follows
        if too_few_to_judge(step, budget):
            checks.append(Check(step.spec, False, f"lossy, and judged on only {budget.on}: give {4 * fidelity_budget.MIN_JUDGED_SAMPLES} or more "
                                                  "calibration samples (a quarter are held out to judge on), or --labels"))
            continue
        specs = [step.spec]
        candidate, failure = _run_step(specs, current, measurement, calibration)
        proto = io.to_proto(candidate) if candidate is not None else None
        score = judge.score(proto) if proto is not None else None
        if (score is None or not judge.holds(score)) and _can_recover(step, calibration):
            specs = [step.spec, step.recovery]  # the step's own budget is then left to the recovery after it
            candidate, failure = _run_step(specs, current, measurement, calibration)
            proto = io.to_proto(candidate) if candidate is not None else None
            score = judge.score(proto) if proto is not None else None
        if score is None:
            checks.append(Check(" + ".join(specs), False, failure))
            continue
        spec_, values = " + ".join(specs), judge.to_dict(score)
        if not judge.holds(score):
            unlabelled = " (the bound for pruning without labels; --labels judges top-1)" if judge is not budget else ""
            checks.append(Check(spec_, False, f"{judge.describe(score)}{unlabelled} against the input on {judge.on}", values))
            continue
        candidate_bytes = computation(proto)
        if candidate_bytes == current_bytes:
            checks.append(Check(spec_, False, UNCHANGED, values))
            continue
        before, after = timer([current, candidate], feeds)
        if before / after < 1.0 - SLOWER_MARGIN:
            checks.append(Check(spec_, False, f"made the model slower: {before:.3g} ms -> {after:.3g} ms", values, before / after))
            continue
        slower_step = _slower_beside(timer, current, candidate, beside)
        if slower_step:
            checks.append(Check(spec_, False, slower_step, values, before / after))
            continue
        checks.append(Check(spec_, True, step.reason, values, before / after))
        kept += [dataclasses.replace(step, recovery=None), *([Step(step.recovery, RECOVERY_REASON)] if len(specs) > 1 else [])]
        current, current_bytes = candidate, candidate_bytes
    orphans = unserved_preparations(kept)
    if orphans:  # e.g. smooth without the INT8 step it prepares for: extra work for nothing, so prove the chain without it
        reasons = [f"{s.spec}: left out, it prepares for {' or '.join(spec.parse_pass(s.spec).prepares)} and none was kept" for s in orphans]
        rest = dataclasses.replace(rec, steps=[s for s in rec.steps if s not in orphans], skipped=[*rec.skipped, *reasons])
        return prove(model, rest, calibration=calibration, labelled=labelled, timer=timer)
    input_ms, chain_ms = least_gain(timer, model, current, feeds) if kept else timer([model], feeds) * 2
    latency = {"input": input_ms, "chain": chain_ms}
    for suffix, run in beside if kept else ():
        latency[f"input{suffix}"], latency[f"chain{suffix}"] = least_gain(timer, model, current, run)
    refusal = _chain_refusal(latency) if kept else None
    if refusal is not None:
        checks.append(refusal)
        kept, current, latency = [], model, {"input": input_ms, "chain": input_ms}
    score = budget.score(io.to_proto(current))
    final = budget.report(score)
    lossy = any(not spec.parse_pass(s.spec).exact for s in kept)
    proof = Proof(final["judged_on"], calibration is not None or labelled is not None, final["budget"], checks,
                  final["values"], final["where"], latency, latency_on, fidelity_budget.unseen_changes(budget, score) if lossy else None)
    return dataclasses.replace(rec, steps=kept, proof=proof)


def _chain_refusal(latency: Mapping[str, float]) -> Check | None:
    """Why the kept chain as a whole is not recommended (not ``MIN_GAIN`` faster, or slower on a run beside the fed
    step: a cached decoder's generation step, a merged decoder's other branch), None when it is."""
    input_ms, chain_ms = latency["input"], latency["chain"]
    if input_ms / chain_ms < 1.0 + MIN_GAIN:
        return Check("the chain", False, f"not measurably faster than the input as a whole ({input_ms:.3g} ms -> {chain_ms:.3g} ms, "
                                         f"under {1.0 + MIN_GAIN:.2f}x): nothing recommended", speedup=input_ms / chain_ms)
    for suffix, what in generation.RUNS.items():
        before, after = latency.get(f"input{suffix}"), latency.get(f"chain{suffix}")
        if before is not None and before / after < 1.0 - SLOWER_MARGIN:
            return Check("the chain", False, f"slower on {what} ({before:.3g} ms -> {after:.3g} ms): nothing recommended",
                         speedup=before / after)
    return None


def _slower_beside(timer: Timer, current: ir.Model, candidate: ir.Model, beside: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> str | None:
    """Why ``candidate`` is no better than ``current`` on a run beside the fed step (``generation.checks_beside``: a
    cached decoder's generation step, a merged decoder's other branch), slower or failing there; None when it holds."""
    for suffix, run in beside:
        what = generation.RUNS[suffix]
        try:
            before, after = timer([current, candidate], run)
        except UsageError as exc:
            return f"fails on {what}: {first_line(exc)}"
        if before / after < 1.0 - SLOWER_MARGIN:
            return f"made {what} slower: {before:.3g} ms -> {after:.3g} ms"
    return None


def computation(proto: onnx.ModelProto) -> bytes:
    """The model serialized without its shape annotations (``value_info``): a step that only filled those in, as
    shape inference does, changed nothing the graph computes, so it has nothing to offer as advice."""
    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    del bare.graph.value_info[:]
    return bare.SerializeToString()


def least_gain(timer: Timer, model: ir.Model, chain: ir.Model, feeds: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """The input's and the chain's latency from whichever of two full measurements, run in opposite orders, favours
    the chain less, so a gain that only the order of measurement gives is not taken for one."""
    input_ms, chain_ms = timer([model, chain], feeds, full=True)
    chain_again, input_again = timer([chain, model], feeds, full=True)
    return min((input_ms, chain_ms), (input_again, chain_again), key=lambda pair: pair[0] / pair[1])


def too_few_to_judge(step: Step, budget: fidelity_budget.Budget) -> bool:
    """A lossy step whose budget has real samples to judge on, but fewer than ``budget.MIN_JUDGED_SAMPLES`` (synthetic
    inputs, which judge no task, are reported as such in the proof)."""
    return fidelity_budget.too_few_samples(budget) and not spec.parse_pass(step.spec).exact


def unserved_preparations(steps: Sequence[Step]) -> list[Step]:
    """The steps that exist to improve a later pass (``CompressionPass.prepares``) with no such pass after them."""
    names = [spec.parse_pass(s.spec).name for s in steps]
    return [s for i, s in enumerate(steps) if (served := spec.parse_pass(s.spec).prepares) and not set(served) & set(names[i + 1:])]


def _for_data(step: Step, calibration: Any) -> Step:
    """``step``, or the step it names to try instead when it needs calibration data and there is none."""
    if calibration is None and step.without_data is not None and spec.parse_pass(step.spec).calibration_need() is not None:
        return step.without_data
    return step


def _can_recover(step: Step, calibration: Any) -> bool:
    """Whether ``step``'s recovery can run here: it has one, calibration data to train on, and PyTorch."""
    import importlib.util

    return step.recovery is not None and calibration is not None and importlib.util.find_spec("torch") is not None


def _run_step(specs: Sequence[str], model: ir.Model, measurement: Measurement, calibration: Any) -> tuple[ir.Model | None, str]:
    """The model after the passes of ``specs`` (one step, or a step and its recovery) on a copy of ``model``,
    or None and why the step cannot be kept."""
    passes = [spec.parse_pass(text) for text in specs]
    need = next((need for pass_ in passes if (need := pass_.calibration_need()) is not None), None)
    if calibration is None and need is not None:
        return None, f"not run: it needs calibration data (--calibration): {need}"
    try:
        return Pipeline(passes, measurement=measurement).run(io.clone(model), calibration=calibration).model, ""
    except (CheckFailed, UsageError) as exc:
        return None, str(exc)
    except Exception as exc:  # a defect in a pass must not become advice: the step is left out, the defect named
        return None, f"failed on a bug in onnxcompress ({type(exc).__name__}: {first_line(exc)}; please report it)"


def latency_feeds(model: ir.Model, calibration: Any, shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], str]:
    """The inputs each step is checked and timed on, and a description: the first held-out calibration
    sample (``holdout.check_samples``), else synthetic inputs at ``shapes``."""
    if calibration is not None:
        return check_samples(calibration, model, 1)
    described = f" at {runtime.describe_shapes(shapes)}" if shapes else ""
    return runtime.synthetic_inputs(model, shapes=shapes or None), f"synthetic inputs{described}"


def side_by_side(models: Sequence[ir.Model], feeds: Mapping[str, np.ndarray], *, full: bool = False) -> list[float]:
    """Median latency (ms) of each model on ``feeds``, measured side by side: a few short alternating rounds,
    and when a model differs from the first by more than ``SLOWER_MARGIN`` (or ``full``), a full measurement
    (more and longer rounds, noisy ones retried) whose figures stand, so one noisy glimpse does not decide."""
    sessions = bench.sessions(models)
    batches = [feeds] * len(sessions)
    if not full:
        quick = [latency.median_ms for latency in bench.measure(
            sessions, batches, batch=1, rounds=PROOF_ROUNDS, round_seconds=PROOF_ROUND_SECONDS, max_extra_rounds=0)]
        if all(abs(quick[0] / ms - 1.0) <= SLOWER_MARGIN for ms in quick[1:]):
            return quick
    return [latency.median_ms for latency in bench.measure(
        sessions, batches, batch=1, rounds=CONFIRM_ROUNDS, round_seconds=CONFIRM_ROUND_SECONDS)]
