"""``prune-channels``: remove whole filters, neurons and attention heads from any ONNX model.

The pass works on a copy (untied weights, inferred shapes) and only replaces the model's graph when
something is removed, so a model with nothing to prune comes back untouched. It builds the channel
dependency graph (``dependencies``), scores every removable unit
(``importance``), picks the lowest per group or globally (``selection``), optionally folds what the
removed units contributed into the consumers (``recovery``), and slices every coupled tensor and
shape constant at once (``rewrite``). The result must then hold the same fidelity budget as the
quantizers (``onnxcompress.passes.budget``), judged after any recovery; a model it cannot hold is not
written (``CheckFailed``) unless ``accept_loss`` accepts the loss. Unlike Torch-Pruning it needs no
PyTorch source — measured on the ResNet-18 layout at 50 %: 3.053M parameters and identical MACs to Torch-Pruning 1.6.1's 3.052M
(``docs/benchmarks/bench_pruning.md``) — and unlike onnxsim's pruner it follows residual Adds, Concats,
Flatten into Gemm and attention heads.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from onnxcompress import io
from onnxcompress.calibration.validation import model_batches
from onnxcompress.passes import budget as fidelity_budget
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.budget import AcceptLoss, MaxDrop, MaxError
from onnxcompress.passes.exclude import Candidate, node_candidates, noted, resolve
from onnxcompress.passes.pruning import importance, recovery
from onnxcompress.passes.pruning.dependencies import build_channel_graph, infer_shapes
from onnxcompress.passes.pruning.flops import model_macs
from onnxcompress.passes.pruning.graph import ChannelGraph, Unit
from onnxcompress.passes.pruning.groups import GroupInfo, frozen_summary, group_infos, group_report
from onnxcompress.passes.pruning.lookup_shapes import shapes_without_lookups
from onnxcompress.passes.pruning.zero_states import drop_zero_initial_states
from onnxcompress.passes.pruning.rewrite import apply_removal
from onnxcompress.passes.pruning.selection import Constraints, choose, keep_every_tensor
from onnxcompress.passes.remove_initializer_inputs import initializer_inputs, weights_as_inputs
from onnxcompress.passes.pruning.untie import Tie, retie_unchanged, untie_weights
from onnxcompress.stats import parameter_count

Importance = Literal["magnitude", "activation", "mean_abs", "apoz", "taylor"]
Scope = Literal["local", "global"]
CALIBRATED_SCORES = {
    "activation": importance.activation_scores,
    "mean_abs": importance.mean_abs_scores,
    "apoz": importance.apoz_scores,
}


class PruneChannels(CompressionPass):
    """Remove whole channels, neurons and attention heads, rewriting every coupled tensor.

    ``importance``: ``magnitude`` (weight L2), ``activation`` (|W|·‖X‖), ``mean_abs`` (mean |a|),
    ``apoz`` (1 − average percentage of zeros) or ``taylor``; all but ``magnitude`` need calibration.
    By default the pruned model must keep a fidelity budget on held-out calibration samples (slice error
    ≤ ``max_error``, 0.5 by default; with labels, accuracy drop ≤ ``max_drop``, 0.01 by default), on
    synthetic inputs without calibration data, judged after ``bias_fold``/``reconstruct``; else
    ``CheckFailed`` unless ``accept_loss=true`` (``onnxcompress.passes.budget``).
    """

    name = "prune-channels"
    exact = False

    def __init__(
        self,
        ratio: Annotated[float, "fraction of units to remove, in [0, 1): of each group (scope=local) or of each kind's removable "
                                "units (scope=global); 0 removes none"] = 0.5,
        scope: Annotated[Scope, "local: remove ratio of every group; global: the lowest-scoring ratio of each kind (heads, neurons, "
                                "channels) over all its groups together, so layers keep different counts"] = "local",
        normalise: Annotated[bool, "scope=global: divide each group's scores by their mean before ranking, so groups of different scale "
                                   "compare fairly; false ranks the scores as they are, for units that all write into one shared "
                                   "tensor (a transformer's heads and FFN neurons into its residual stream)"] = True,
        importance: Annotated[Importance, "how units are scored, lowest removed first: weight L2 norm (magnitude), |W|·‖X‖ (activation), "
                                          "mean |a|, 1 - share of zeros (apoz) or first-order Taylor; all but magnitude need calibration"] = "magnitude",
        round_to: Annotated[int, "each group keeps a multiple of this many units (rounded up; 8 or 16 suit fast kernels); 1: no rounding"] = 1,
        min_channels: Annotated[int, "fewest units any group keeps"] = 1,
        exclude: Annotated[list[str] | None, "glob patterns (a|b) of node or initializer names whose channels are never removed; "
                                      "a pattern matching none is an error"] = None,
        heads: Annotated[bool, "allow removing whole attention heads"] = True,
        ffn: Annotated[bool, "allow removing neurons of linear layers (Gemm/MatMul outputs, e.g. a transformer's FFN)"] = True,
        layernorm: Annotated[bool, "allow removing channels a LayerNormalization normalises over (lossy: its statistics change)"] = False,
        dead_only: Annotated[bool, "remove only dead units (every reader multiplies them by zero weights, so no output changes), "
                                   "whatever ratio says"] = False,
        bias_fold: Annotated[bool, "add the removed channels' mean contribution on calibration data to each consumer's bias"] = False,
        reconstruct: Annotated[bool, "re-fit each consumer's kept weights and bias by least squares on calibration data "
                                     "(takes the place of bias_fold)"] = False,
        max_error: MaxError = None,
        max_drop: MaxDrop = None,
        accept_loss: AcceptLoss = False,
    ) -> None:
        super().__init__()
        self.ratio, self.scope, self.normalise, self.importance = ratio, scope, normalise, importance
        self.round_to, self.min_channels, self.exclude = round_to, min_channels, list(exclude or [])
        self.heads, self.ffn, self.layernorm, self.dead_only = heads, ffn, layernorm, dead_only
        self.bias_fold, self.reconstruct = bias_fold, reconstruct
        self.max_error, self.max_drop, self.accept_loss = max_error, max_drop, accept_loss
        self.check_choices()
        fidelity_budget.check_options(self)
        self.require(0 <= ratio < 1, "ratio", "in [0, 1)")
        self.require(normalise or scope == "global", "normalise", "true unless scope=global (local ranks within one group, where raw scores change nothing)")
        self.require(round_to >= 1, "round_to", "at least 1")
        self.require(min_channels >= 1, "min_channels", "at least 1")

    def calibration_need(self) -> str | None:
        """Activation-based importance, bias folding and reconstruction read activations; magnitude does not."""
        if self.ratio == 0 and not self.dead_only:
            return None
        if self.importance != "magnitude":
            return f"importance={self.importance} scores channels on activations"
        if self.bias_fold or self.reconstruct:
            return "bias_fold and reconstruct fit what the removed channels carried on activations"
        return None

    def _example_shapes(self, model: ir.Model) -> dict[str, tuple[int, ...]] | None:
        """Input shapes of the first calibration batch (in the model's own batch), to probe a model that
        does not run at the probe sizes; None without calibration data."""
        if self.context.calibration is None:
            return None
        return {name: array.shape for name, array in next(model_batches(self.context.calibration, model)).arrays().items()}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if self.ratio == 0 and not self.dead_only:
            self.note("ratio=0: nothing removed (identity)")
            return ir.passes.PassResult(model, modified=False)
        self._validate_calibration(model)
        budget, self.context.calibration = fidelity_budget.default_budget(
            model, calibration=self.context.calibration, labelled=self.context.labelled,
            max_error=self.max_error, max_drop=self.max_drop, inputs=self.context.inputs)
        work = io.clone(model)
        LiftConstantsToInitializersPass()(work)  # weights in Constant nodes (TorchScript exports) become prunable initializers
        params_before = parameter_count(work)
        self.context.details["lookup_shapes_rewritten"] = shapes_without_lookups(work)
        self.context.details["zero_states_dropped"] = drop_zero_initial_states(work)
        ties = untie_weights(work)
        infer_shapes(work, example=self._example_shapes(work))
        graph = build_channel_graph(work, layernorm=self.layernorm)
        _freeze_excluded(self, graph, work)
        infos = group_infos(graph)
        units = [u for u in graph.units() if u.group in infos]
        frozen = self._frozen_reasons(graph, units, infos)
        remove = self._choose(graph, units, frozen, work, infos)
        before = (params_before, model_macs(work))
        self.context.details["groups"] = group_report(graph, units, infos, remove, frozen)
        self._note_weights_as_inputs(work)
        if not remove.any():
            self.note(self._why_nothing(self.context.details["groups"]))
            return ir.passes.PassResult(model, modified=False)
        chosen = [u for u, r in zip(units, remove) if r]
        self._recover(work, graph, chosen, ties)
        apply_removal(work, graph, chosen)
        retie_unchanged(work, ties)
        work.graph.sort()  # the attention-layout rewrite puts a Transpose after a Shape that reads it (PyTorch's legacy MHA)
        after = (parameter_count(work), model_macs(work))
        self._report(before, after)
        if after[0] >= before[0]:
            self.note(f"declined: the removal would not reduce parameters ({before[0]:,} -> {after[0]:,}); model left unchanged")
            return ir.passes.PassResult(model, modified=False)
        self._hold(budget, work)
        model.graph = work.graph
        return ir.passes.PassResult(model, modified=True)

    @staticmethod
    def _why_nothing(groups: list[dict]) -> str:
        """Why no unit was removed: the commonest reason the groups are frozen, or that no group holds a weight."""
        if not groups:
            return "nothing can be pruned: no channel runs through a stored floating-point weight"
        why = frozen_summary(groups)
        return f"nothing can be pruned: every channel is frozen or needed{'; ' + why if why else ''}; each group's reason is in details.groups"

    def _note_weights_as_inputs(self, model: ir.Model) -> None:
        """Name the weights left alone because they are graph inputs a caller could override, and the pass that fixes it."""
        if exposed := initializer_inputs(model.graph):
            self.note(f"{weights_as_inputs(exposed)}, so a caller could override them and they are not pruned (e.g. {exposed[0].name!r}): "
                      "-p remove-initializer-inputs first makes them constants")

    def _validate_calibration(self, model: ir.Model) -> None:
        """Calibration data, when given, must feed this model."""
        if self.context.calibration is None:
            return
        from onnxcompress.calibration.validation import validate_reader

        validate_reader(self.context.calibration, model)

    def _frozen_reasons(self, graph: ChannelGraph, units: list[Unit], infos) -> list[str | None]:
        reasons = [graph.frozen_reason(u) for u in units]
        for i, unit in enumerate(units):
            kind = infos[unit.group].kind
            if reasons[i] is None and kind == "heads" and not self.heads:
                reasons[i] = "attention heads not requested (heads=false)"
            if reasons[i] is None and kind == "neurons" and not self.ffn:
                reasons[i] = "linear neurons not requested (ffn=false)"
        return reasons

    def _choose(self, graph: ChannelGraph, units: list[Unit], frozen: list[str | None], model: ir.Model,
                infos: dict[int, GroupInfo]) -> np.ndarray:
        removable = np.array([r is None for r in frozen], dtype=bool)
        if self.dead_only:
            return keep_every_tensor(graph, units, removable & importance.dead_units(graph, units), np.zeros(len(units)))
        scores = self._scores(graph, units, model)
        scores = importance.normalise(scores, units) if self.normalise else scores
        limits = Constraints(self.ratio, self.scope, self.round_to, self.min_channels)
        kinds = np.array([infos[u.group].kind for u in units])
        return keep_every_tensor(graph, units, choose(units, scores, removable, limits, kinds), scores)

    def _scores(self, graph: ChannelGraph, units: list[Unit], model: ir.Model) -> np.ndarray:
        if self.importance in CALIBRATED_SCORES:
            return CALIBRATED_SCORES[self.importance](graph, units, model, self.context.calibration)
        if self.importance == "taylor":
            from onnxcompress.passes.pruning.taylor import taylor_scores

            return taylor_scores(graph, units, model, self.context.calibration)
        return importance.magnitude_scores(graph, units)

    def _recover(self, model: ir.Model, graph: ChannelGraph, chosen: list[Unit], ties: list[Tie]) -> None:
        if self.reconstruct:
            self.note(recovery.reconstruct(model, graph, chosen, self.context.calibration, ties))
        elif self.bias_fold:
            self.note(recovery.fold_into_bias(model, graph, chosen, self.context.calibration, ties))

    def _hold(self, budget: fidelity_budget.Budget, pruned: ir.Model) -> None:
        """Judge ``pruned`` (recovery included) against the budget: ``CheckFailed`` over it unless ``accept_loss``."""
        score = budget.score(io.to_proto(pruned))
        if self.context.recovery_follows:
            return fidelity_budget.leave_to_recovery(self, budget, score)
        self.context.details["budget"] = {**budget.report(score), "accepted_loss": not budget.holds(score)}
        recovered = "least-squares reconstruction" if self.reconstruct else "bias folding" if self.bias_fold else None
        effort = f", after {recovered}" if recovered else ", without recovery (reconstruct=true re-fits the consumers on calibration data)"
        fidelity_budget.settle(self, budget, score, accept_loss=self.accept_loss, effort=effort)

    def _report(self, before: tuple[int, int], after: tuple[int, int]) -> None:
        groups = self.context.details["groups"]
        removed = sum(g["removed"] for g in groups)
        touched = sum(1 for g in groups if g["removed"])
        self.context.details.update(params_before=before[0], params_after=after[0], macs_before=before[1], macs_after=after[1])
        self.note(f"removed {removed} units in {touched} of {len(groups)} groups")
        self.note(f"params {before[0]:,} -> {after[0]:,}; MACs/sample {before[1]:,} -> {after[1]:,}")
        for g in groups:
            if g["frozen"] and not g["removed"]:
                self.note(f"frozen {g['kind']} {g['group']}: {g['reason']}")


def _freeze_excluded(pass_: PruneChannels, graph: ChannelGraph, model: ir.Model) -> None:
    """Freeze every axis of the nodes and initializers ``pass_.exclude`` names (``exclude.resolve``), noted in the run."""
    if not pass_.exclude:
        return
    initializers = [Candidate(name, (name,), "initializer", True) for name in model.graph.initializers]
    names = set(noted(pass_, resolve(pass_.name, pass_.exclude, [*node_candidates(model, lambda node: True), *initializers]), "name"))
    values = [v for name, v in model.graph.initializers.items() if name in names]
    for node in model.graph:
        if node.name in names:
            values += [v for v in (*node.inputs, *node.outputs) if v is not None]
    for value in values:
        for slot in graph.slots():
            if slot.value is value:
                graph.freeze(slot, f"excluded by the user ({value.name!r})")
