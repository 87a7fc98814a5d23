"""``recover``: fine-tune a compressed graph by distillation from the chain's input model, on calibration data.

Structured pruning without training loses much of a model's accuracy at useful ratios; this pass
gives it back the way Torch-Pruning and NNCF do, by training, but from the ONNX graph alone: the
graph's float weights become PyTorch parameters (``graph_module``), the teacher (the chain's input,
or ``teacher=PATH``) runs in ONNX Runtime, and the trained weights are written back into the same
graph, so the structure is unchanged and the passes after it see an ordinary model.

The student is trained on the calibration samples the budget does not judge on, with a tenth of them
kept aside to stop early (the best epoch on them is kept); the result must then hold the fidelity
budget against the teacher on the held-out samples, as any lossy pass does, and a lossy step earlier
in the chain leaves its budget to this one (``PassContext.recovery_follows``). Training that does not
bring the model closer to the teacher is undone.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.calibration.validation import model_batches
from onnxcompress.errors import UsageError
from onnxcompress.passes import budget as fidelity_budget
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.budget import AcceptLoss, MaxDrop, MaxError

Kind = Literal["mse", "kd", "reverse-kd"]
EARLY_STOP_SHARE = 0.1
FEW_TO_STOP_ON = 8  # fewer early-stopping samples than this choose the epoch kept by chance as much as by merit
SCALE_SAMPLES = 256  # samples the teacher's spread per output element is measured on
HIDDEN_WEIGHT = 4.0  # MiniLM pruned by half, 3 epochs on 2,000 sentences: mean cosine 0.903 / 0.906 / 0.908 / 0.908 at 1/4, 1, 4, 16


class Recover(CompressionPass):
    """Distil the chain's input model into this one on calibration data, training the graph's float weights.

    ``kind=mse`` matches every float output, each scaled by the teacher's spread (logits, embeddings,
    boxes alike; a model that outputs labels only, the scores they are taken from); ``kind=kd`` is
    Hinton's soft-target loss at ``temperature`` on a classifier's one ``[samples, classes]`` output,
    ``kind=reverse-kd`` the reverse (mode-seeking) KL on it; with ``labels=PATH`` both train on those
    labelled samples, ``alpha`` soft + ``1 - alpha`` hard. Declined: the library's attribution strategy,
    which needs the teacher's input gradients (the teacher runs in ORT). Needs the ``torch`` extra and
    calibration data.
    """

    name = "recover"
    exact = False
    recovers = True

    def __init__(
        self,
        *,
        epochs: Annotated[int, "most passes over the training samples (the best epoch on the early-stopping samples is kept)"] = 5,
        seconds: Annotated[float, "time budget: stop after the epoch in which this many seconds of training have passed (0: none)"] = 0.0,
        lr: Annotated[float, "AdamW learning rate (cosine decay over the epochs); fine-tuning wants a small one"] = 1e-4,
        batch_size: Annotated[int, "samples per training step (the model's own batch when it is fixed)"] = 32,
        patience: Annotated[int, "stop after this many epochs without a lower early-stopping loss"] = 3,
        kind: Annotated[Kind, "mse: every float output (of a labels-only model, the scores behind the labels), scaled by the teacher's "
                              "spread; kd: soft-target KL on one [samples, classes] "
                              "output; reverse-kd: KL(student || teacher) on it (mode-seeking)"] = "mse",
        temperature: Annotated[float, "softening temperature of kind=kd and reverse-kd"] = 4.0,
        teacher: Annotated[str | None, "ONNX file to distil from (none: the model the chain started from)"] = None,
        labels: Annotated[str | None, "an .npz of training inputs with a 'labels' array (run's --labels format): kind=kd and "
                                      "reverse-kd then train on these samples with hard cross-entropy beside the soft targets"] = None,
        alpha: Annotated[float, "with labels: weight of the soft targets against the hard labels (1 - alpha)"] = 0.5,
        hidden: Annotated[bool, "with kind=mse, also match the residual stream: the normalisations' outputs both graphs compute under one name and shape"] = True,
        hidden_weight: Annotated[float, "how much the matched hidden states weigh together against the outputs in the loss (1: as much)"] = HIDDEN_WEIGHT,
        seed: Annotated[int, "seed of the sample order and the early-stopping split"] = 0,
        max_error: MaxError = None,
        max_drop: MaxDrop = None,
        accept_loss: AcceptLoss = False,
    ) -> None:
        super().__init__()
        self.epochs, self.seconds, self.lr, self.batch_size, self.patience = epochs, seconds, lr, batch_size, patience
        self.kind, self.temperature, self.teacher, self.hidden, self.hidden_weight, self.seed = kind, temperature, teacher, hidden, hidden_weight, seed
        self.labels, self.alpha = labels, alpha
        self.max_error, self.max_drop, self.accept_loss = max_error, max_drop, accept_loss
        self.check_choices()
        fidelity_budget.check_options(self)
        self.require(epochs >= 1, "epochs", "at least 1")
        self.require(seconds >= 0, "seconds", ">= 0")
        self.require(lr > 0, "lr", "> 0")
        self.require(batch_size >= 1, "batch_size", "at least 1")
        self.require(patience >= 1, "patience", "at least 1")
        self.require(temperature > 0, "temperature", "> 0")
        self.require(hidden_weight > 0, "hidden_weight", "> 0")
        self.require(0 <= alpha <= 1, "alpha", "within 0..1")
        self.require(labels is None or kind != "mse", "labels", "used with kind=kd or reverse-kd (hard labels need class scores)")

    def calibration_need(self) -> str | None:
        """Recovery trains on calibration samples."""
        return "it trains the model on calibration samples"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        try:
            import torch  # noqa: F401
        except ModuleNotFoundError:
            raise UsageError("recover needs PyTorch: pip install 'onnxcompress[torch]'") from None
        from onnxcompress.passes.training.graph_module import GraphModule

        teacher = self._teacher()
        budget, rest = fidelity_budget.default_budget(teacher, calibration=self.context.calibration, labelled=self.context.labelled,
                                                      max_error=self.max_error, max_drop=self.max_drop, inputs=self.context.inputs)
        graph = GraphModule(model)
        if not list(graph.parameters()):
            raise UsageError("recover: the model has no float or QDQ-quantized weights to train")
        before = budget.score(io.to_proto(model))
        if all(value <= 0 for value in before.values):  # every measure as the teacher's: slice error, changed labels, ...
            self.note(f"nothing to recover: the model does what its teacher does on {budget.on}")
            return ir.passes.PassResult(model, modified=False)
        if graph.grids:
            self.note(f"quantization-aware: {len(graph.grids)} quantized weight(s) train on their INT8 grids, the QDQ structure kept")
        initial = {key: p.detach().clone() for key, p in graph.named_parameters()}
        history = self._train(graph, teacher, rest)
        graph.write_back()
        after = before
        if history.best_epoch == 0:  # the engine kept the model as given: every epoch left it further from the teacher
            lowest = min(e.val_loss for e in history.history)
            self.note(f"no epoch lowered the early-stopping loss below the model's own before training (best after an epoch: {lowest:.4g}): "
                      "weights left as they were; a smaller lr may help")
        # otherwise judged as the budget judges, by its worst measure (kd's soft targets move logits, not top-1)
        elif budget.excess(trained := budget.score(io.to_proto(model))) >= budget.excess(before):
            self._undo(graph, initial)
            self.note(f"training did not bring the model closer to its teacher on {budget.on}: weights left as they were")
        else:
            after = trained
            self.note(f"trained {history.best_epoch} of {len(history.history)} epochs run (best on the early-stopping samples): "
                      f"{budget.describe(before)} -> {budget.describe(after)} on {budget.on}")
        self.context.details["recover"] = {"before": budget.to_dict(before), "epochs": [vars(e) for e in history.history],
                                           "best_epoch": history.best_epoch}
        self.context.details["budget"] = {**budget.report(after), "accepted_loss": not budget.holds(after)}
        fidelity_budget.settle(self, budget, after, accept_loss=self.accept_loss, effort=", after recovery")
        return ir.passes.PassResult(model, modified=after is not before)

    def _teacher(self) -> ir.Model:
        if self.teacher is not None:
            return io.load(self.teacher)
        if self.context.teacher is None:
            raise UsageError("recover needs a teacher: run it in a chain (the chain's input model teaches) or give teacher=PATH")
        return self.context.teacher

    def _train(self, graph, teacher: ir.Model, reader):
        """Distil ``teacher`` into ``graph`` on ``reader``'s samples; the engine's result (best epoch restored)."""
        from onnxcompress import runtime
        from onnxcompress.distill import distributed, engine, strategies
        from onnxcompress.passes.training import targets, trimming

        if distributed.world_size() > 1:
            self.note(f"data-parallel on torch.distributed: {distributed.world_size()} processes share every batch")

        per_sample, fixed, model_batch = training_samples(reader, graph.model)
        labels = None
        if self.labels is not None:
            per_sample, fixed, model_batch, labels = self._labelled_samples(graph.model)
        total = len(next(iter(per_sample.values())))
        order = np.random.default_rng(self.seed).permutation(total)
        aside = max(1, int(total * EARLY_STOP_SHARE)) if total > 1 else 0
        train = {name: a[order[aside:]] for name, a in per_sample.items()}
        stop = {name: a[order[:aside]] for name, a in per_sample.items()}
        if 0 < aside < FEW_TO_STOP_ON:  # none aside: there is no early stopping to be noisy
            self.note(f"early stopping judges on only {aside} sample(s), {EARLY_STOP_SHARE:.0%} of the {total} given: which epoch is "
                      f"kept is noisy; give {math.ceil(FEW_TO_STOP_ON / EARLY_STOP_SHARE)} or more calibration samples")
        train_labels, stop_labels = (None, None) if labels is None else (labels[order[aside:]], labels[order[:aside]])
        batch = model_batch or min(self.batch_size, len(order) - aside)
        probe = {**{name: a[:model_batch or SCALE_SAMPLES] for name, a in train.items()}, **fixed}
        candidates = targets.residual_stream(teacher, graph.model) if self.hidden and self.kind == "mse" else []
        scores = self._label_scores(graph, teacher)
        teacher = targets.with_outputs(teacher, candidates + scores) if candidates or scores else teacher
        outputs, axes = targets.trained_outputs(teacher, len(next(iter(probe.values()))), probe)
        hidden = self._same_shapes(graph, outputs, axes, candidates, {**{name: a[:model_batch or 2] for name, a in train.items()}, **fixed})
        outputs = {name: value for name, value in outputs.items() if name not in set(candidates) - set(hidden)}
        if self.kind != "mse":
            scales = {self._kd_output(outputs): 1.0}
        else:
            weights = targets.hidden_weights(outputs, hidden, self.hidden_weight)
            scales = {name: scale * weights[name] for name, scale in targets.output_scales(outputs).items()}
        if hidden:
            self.note(f"matching {len(hidden)} hidden state(s) of the residual stream beside the outputs")
        trim = trimming.detect(teacher, lambda feeds: runtime.run(teacher, feeds), train, fixed)
        lengths = trim.lengths(train)
        if lengths is not None:
            self.note(f"each batch cut to its longest real sequence (mean length {lengths.mean():.1f} of {train[next(iter(trim.feeds))].shape[1]}), "
                      "batches drawn from sentences of similar length")
        loss = strategies.ReverseKLD if self.kind == "reverse-kd" else strategies.Standard
        if labels is not None:
            self.note(f"hard labels: {total} labelled samples, soft targets weigh {self.alpha}, labels {1 - self.alpha:g}")
        strategy = loss(targets.Teacher(teacher, scales, fixed, axes, trim), temperature=self.temperature,
                        alpha=1.0 if labels is None else self.alpha, kind="mse" if self.kind == "mse" else "ce")
        return engine.distill(
            strategy.teacher, targets.Student(graph, scales, fixed, axes, trim), (train, train_labels), strategy=strategy, epochs=self.epochs,
            lr=self.lr, batch_size=batch, seed=self.seed, val=(stop, stop_labels) if aside else None, patience=self.patience,
            seconds=self.seconds or None, start_from_student=True, lengths=lengths,
        )

    def _labelled_samples(self, model: ir.Model) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int | None, np.ndarray]:
        """``labels=PATH``'s inputs as ``training_samples`` gives them, and their class labels in the same order."""
        from onnxcompress.calibration.readers import as_reader
        from onnxcompress.pipeline import LabelledData

        source = f"recover labels={self.labels}"
        data = LabelledData.from_arrays(io.load_arrays(self.labels), model, source=source)
        per_sample, fixed, model_batch = training_samples(as_reader(data.feeds, model), model)
        fed = len(next(iter(per_sample.values())))
        if fed != len(data.labels):
            raise UsageError(f"{source}: {len(data.labels)} labels, but {fed} samples fit the model's batch of {model_batch}")
        return per_sample, fixed, model_batch, data.labels.astype(np.int64)

    def _label_scores(self, graph, teacher: ir.Model) -> list[str]:
        """The scores a labels-only teacher takes its labels from, which the student must compute too (named alike)."""
        from onnxcompress.passes.training import targets

        scores = targets.label_scores(teacher)
        computed = {value.name for node in graph.model.graph for value in node.outputs} if scores else set()
        missing = [name for name in scores if name not in computed]
        if missing:
            raise UsageError(f"recover: the model outputs labels only, and the scores they are taken from ({', '.join(missing)}) "
                             "are not computed under the same name in the model being recovered")
        if scores:
            self.note(f"the model outputs labels only: training towards the scores they are taken from ({', '.join(scores)})")
        return scores

    @staticmethod
    def _same_shapes(graph, outputs: dict[str, np.ndarray], axes: dict[str, int], hidden: list[str], feeds: dict[str, np.ndarray]) -> list[str]:
        """The ``hidden`` states the student computes at the teacher's shape (per sample) on ``feeds``."""
        import torch

        if not hidden:
            return []
        with torch.no_grad():
            values = graph.evaluate(feeds)
        return [name for name in hidden if name in outputs and tuple(values[name].movedim(axes[name], 0).shape[1:]) == outputs[name].shape[1:]]

    @staticmethod
    def _kd_output(outputs: dict[str, np.ndarray]) -> str:
        """The one ``[samples, classes]`` output kind=kd and reverse-kd soften."""
        classes = [name for name, value in outputs.items() if value.ndim == 2 and value.shape[1] >= 2]
        if len(classes) != 1:
            raise UsageError(f"recover: kind=kd and reverse-kd need exactly one [samples, classes] output, found {len(classes)}; "
                             "kind=mse matches any")
        return classes[0]

    @staticmethod
    def _undo(graph, initial) -> None:
        import torch

        with torch.no_grad():
            for key, parameter in graph.named_parameters():
                parameter.copy_(initial[key])
        graph.write_back()


def training_samples(reader, model: ir.Model) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int | None]:
    """The reader's samples joined per input (``per_sample``), the inputs fed whole (``fixed``), and the model's
    batch when it is fixed; token rows padded per reader batch (a text file's sentences) are padded to the
    longest, other samples of different shapes are refused in one line."""
    parts: dict[str, list[np.ndarray]] = {}
    fixed: dict[str, np.ndarray] = {}
    model_batch = None
    for feed in model_batches(reader, model):
        for name, array in feed.per_sample.items():
            parts.setdefault(name, []).append(array)
        fixed, model_batch = feed.fixed, feed.model_batch
    try:
        return {name: np.concatenate(padded_tokens(arrays)) for name, arrays in parts.items()}, fixed, model_batch
    except ValueError:
        shapes = sorted({a.shape[1:] for arrays in parts.values() for a in arrays})
        raise UsageError(f"recover: calibration samples must share one shape to be batched, found {shapes[:3]}") from None


def padded_tokens(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Integer ``[samples, tokens]`` batches of different lengths right-padded with zeros to the longest, as a
    tokenizer pads (mask 0); any other arrays as they are."""
    if len({a.shape for a in arrays}) == 1 or not all(a.ndim == 2 and a.dtype.kind in "iub" for a in arrays):
        return arrays
    longest = max(a.shape[1] for a in arrays)
    return [np.pad(a, ((0, 0), (0, longest - a.shape[1]))) for a in arrays]
