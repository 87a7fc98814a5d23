"""``fold-constants``: evaluate what is already known at export time, within a size budget.

Built on onnxscript's constant folder (``onnxscript.optimizer.fold_constants``), which already
folds constant subgraphs and static shape arithmetic (Shape→Gather→Concat… when shapes are
static). What we add is a byte budget on every folded tensor (``max_folded_mb``): onnxscript never
folds ``ConstantOfShape`` and onnxslim always does, and on ``onnx/backend/test/data/light`` the
latter turns a 9 KB VGG-19 into 548 MiB; we fold a ``ConstantOfShape`` only when its output fits the
budget. The folder evaluates a node before its own size check, so every node's output size is
estimated from its constant inputs' shapes and values first (``folded_bytes``) and a node over the
budget is never evaluated: an ``Expand`` to 8 GB costs nothing. Dead nodes are removed first and
nothing inside a ``Loop``/``If``/``Scan`` body is folded, since those may never run. Initializers
that are also graph inputs are overridable, so nothing that reads one is folded (the folder refuses
graph inputs).

Shapes are inferred for the whole model at once first (``passes/shapes.py``); onnxscript's per-node
inference, 0.15 ms a node in Python (35 s on a 200,000-node chain), then runs only around what the
folder changes (``_Folder``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.optimizer import _constant_folding as folding  # the folder's class, to infer shapes only where needed

from onnxcompress import walk
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.initializers import allow_plain_initializers
from onnxcompress.passes.shapes import infer_shapes

MB = 2**20
FLOAT32_BYTES = 4
FOLDER_FAILURE = "Error during constant folding"


class FoldConstants(CompressionPass):
    """Fold constant subgraphs, static shape arithmetic and small ConstantOfShape into initializers."""

    name = "fold-constants"
    exact = True

    def __init__(
        self,
        max_folded_mb: Annotated[float, "largest tensor, in MiB, one folded constant may hold; a bigger result stays computed at run time"] = 1.0,
        shape_inference: Annotated[bool, "run ONNX shape inference while folding, so shape arithmetic on static dims folds too"] = True,
    ) -> None:
        super().__init__()
        self.max_folded_mb = max_folded_mb
        self.shape_inference = shape_inference
        self.require(math.isfinite(max_folded_mb) and max_folded_mb >= 0, "max_folded_mb", "a finite number >= 0")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Drop dead nodes, fold, then turn the remaining ``Constant`` nodes into initializers."""
        nodes_before = _count_nodes(model)
        settled = self._infer_shapes(model)  # before anything changes: the proto the run was handed is this model
        common.RemoveUnusedNodesPass()(model)
        kept: list[str] = []
        folded = self._fold(model, settled, self._fold_filter(_subgraphs(model), kept))
        self._note_kept(kept)
        lifted = common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model).modified
        if folded or lifted:  # else nothing died since the first removal
            common.RemoveUnusedNodesPass()(model)
        self._allow_plain_initializers(model)
        removed = nodes_before - _count_nodes(model)
        self.context.details["nodes_folded"] = removed
        self.note(f"folded {removed} nodes into constants (budget {self.max_folded_mb:g} MB per tensor)")
        return ir.passes.PassResult(model, modified=removed > 0)

    def _infer_shapes(self, model: ir.Model) -> set[ir.Value]:
        """With ``shape_inference``, infer the whole model's shapes at once (``passes/shapes.py``) and return the
        values it typed and shaped (what the folder need not infer again, see ``_Folder``); else nothing."""
        if not self.shape_inference:
            return set()
        infer_shapes(model, self.context.serialized)
        return {value for value in _all_values(model) if value.type is not None and value.shape is not None}

    def _fold(self, model: ir.Model, settled: set[ir.Value], should_fold: Callable[[ir.Node], bool | None]) -> bool:
        """Run onnxscript's folder (inferring shapes only at nodes not ``settled``, see ``_Folder``); if one of its op
        evaluators crashes, keep what it folded so far. True unless the folder is known to have changed nothing.

        The folder replaces one node at a time, so the graph it leaves behind is valid and exact.
        """
        folder = _Folder(settled, shape_inference=self.shape_inference, input_size_limit=folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                         output_size_limit=int(self._budget_bytes() // FLOAT32_BYTES), should_fold=should_fold)
        try:
            return folder(model).modified
        except RuntimeError as exc:
            if not str(exc).startswith(FOLDER_FAILURE):
                raise
            self.note(f"folding stopped early: {exc} ({exc.__cause__!r})")
            return True

    def _budget_bytes(self) -> float:
        return self.max_folded_mb * MB

    def _fold_filter(self, bodies: set[ir.Graph], kept: list[str]) -> Callable[[ir.Node], bool | None]:
        """The folder's ``should_fold`` for one run, asked before it evaluates a node: it refuses nodes in
        ``bodies`` and anything over the budget (naming those in ``kept``).

        ``ConstantOfShape`` within the budget is folded (onnxscript keeps it by default), and so is a node reading
        a constant too large for onnxscript's rules when every reader of it is folded too (``_frees_large_inputs``);
        other ops within it follow onnxscript's rules. An output whose size cannot be told beforehand is not
        folded when the op can grow its inputs (``GROWING_OPS``).
        """

        def should_fold(node: ir.Node) -> bool | None:
            if node.graph in bodies:
                return False
            size = folded_bytes(node)
            if size is None:
                return False if _is_onnx(node) and node.op_type in GROWING_OPS else None
            if size > self._budget_bytes() and size > _freed_bytes(node):
                kept.append(f"{node.op_type} {node.name or node.outputs[0].name!r} ({_mib(size)})")
                return False
            if _is_onnx(node) and node.op_type == "ConstantOfShape":
                return True
            return True if _frees_large_inputs(node, bodies) else None

        return should_fold

    def _note_kept(self, kept: list[str]) -> None:
        """Say which nodes stayed computed at run time because their output would pass the budget."""
        if kept:
            shown = ", ".join(kept[:3]) + (", ..." if len(kept) > 3 else "")
            self.note(
                f"kept {len(kept)} nodes computed at run time, their outputs over the "
                f"{self.max_folded_mb:g} MB budget: {shown}"
            )

    def _allow_plain_initializers(self, model: ir.Model) -> None:
        """New folded constants are not graph inputs, which IR < 4 requires: raise the IR to 4."""
        old = model.ir_version
        if allow_plain_initializers(model):
            self.note(f"raised IR version {old} -> 4 so folded constants need not be inputs")


class _Folder(folding.FoldConstantsPass):
    """onnxscript's constant folder, inferring a node's shapes on its own (0.15 ms a node, through Python) only
    where the whole-model inference run before it may not have said everything: at a node with an input or
    output not in ``settled`` (typed and shaped by that inference, and not changed since: an output whose
    type or shape the folder's inference changes leaves it, so its readers are inferred again too)."""

    def __init__(self, settled: set[ir.Value], **options: Any) -> None:
        super().__init__(**options)
        self._settled = settled

    def _do_inference(self, node: ir.Node) -> None:
        if all(value is None or value in self._settled for value in (*node.inputs, *node.outputs)):
            return
        before = [(value.type, value.shape) for value in node.outputs]
        super()._do_inference(node)
        for value, (type_, shape) in zip(node.outputs, before):
            if value.type != type_ or value.shape != shape:
                self._settled.discard(value)


def folded_bytes(node: ir.Node) -> float | None:
    """Bytes all of ``node``'s outputs would take once evaluated, from its constant inputs; None if unknown.

    The ops that can make a large tensor from small ones are computed from their inputs' values
    (``ConstantOfShape``, ``Expand``, ``Tile``, ``Range``) or shapes (broadcasting ops); any other op
    is sized from the output shapes shape inference found.
    """
    estimate = _ESTIMATES.get(node.op_type) if _is_onnx(node) else None
    elements = estimate(node) if estimate is not None else None
    if elements is not None:
        return elements * _itemsize(node)
    total = 0.0
    for output in node.outputs:
        if output.shape is None or not output.shape.is_static() or output.dtype is None:
            return None
        total += math.prod(output.shape.numpy()) * _bytes_per_element(output.dtype)
    return total


def _constant_of_shape(node: ir.Node) -> int | None:
    shape = _values(node, 0)
    return None if shape is None else math.prod(max(int(d), 0) for d in shape.ravel())


def _expand(node: ir.Node) -> int | None:
    data, shape = _const_shape(node, 0), _values(node, 1)
    if data is None or shape is None:
        return None
    return _broadcast_elements([data, tuple(int(d) for d in shape.ravel())])


def _tile(node: ir.Node) -> int | None:
    data, repeats = _const_shape(node, 0), _values(node, 1)
    if data is None or repeats is None:
        return None
    return math.prod(data) * math.prod(max(int(r), 0) for r in repeats.ravel())


def _range(node: ir.Node) -> int | None:
    bounds = [_values(node, i) for i in range(3)]
    if any(b is None or b.size != 1 for b in bounds):
        return None
    start, limit, delta = (float(b.ravel()[0]) for b in bounds)
    if delta == 0 or not all(math.isfinite(v) for v in (start, limit, delta)):
        return None
    return max(math.ceil((limit - start) / delta), 0)


def _broadcasting(node: ir.Node) -> int | None:
    shapes = [_const_shape(node, i) for i in range(len(node.inputs)) if node.inputs[i] is not None]
    return None if not shapes or any(s is None for s in shapes) else _broadcast_elements(shapes)


def _broadcast_elements(shapes: list[tuple[int, ...]]) -> int:
    """Elements of the numpy broadcast of ``shapes``, without building anything (mismatched dims: the larger)."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    return math.prod(max(max(dims), 0) if 0 not in dims else 0 for dims in zip(*padded))


BROADCASTING_OPS = (
    "Add Sub Mul Div Pow Mod Max Min Sum Mean And Or Xor Equal Less LessOrEqual Greater GreaterOrEqual "
    "BitShift BitwiseAnd BitwiseOr BitwiseXor Where PRelu"
).split()
_ESTIMATES = {
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    "Range": _range,
    **dict.fromkeys(BROADCASTING_OPS, _broadcasting),
}
# Ops whose output can be far larger than their inputs: never folded when its size is unknown.
GROWING_OPS = frozenset(_ESTIMATES) | {"Pad", "Resize", "Upsample", "OneHot", "EyeLike", "Gather", "GatherElements", "GatherND", "MatMul", "Gemm", "Einsum", "ConvTranspose", "CumSum", "DepthToSpace", "SpaceToDepth", "Col2Im"}


def _values(node: ir.Node, index: int):
    """The numpy value of constant input ``index``, or None."""
    value = node.inputs[index] if index < len(node.inputs) else None
    return None if value is None or value.const_value is None else value.const_value.numpy()


def _const_shape(node: ir.Node, index: int) -> tuple[int, ...] | None:
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None or value.const_value is None:
        return None
    return tuple(int(d) for d in value.const_value.shape.numpy())


def _itemsize(node: ir.Node) -> float:
    """Bytes per element of ``node``'s first output: its declared type, the ConstantOfShape fill, else its inputs'."""
    if node.op_type == "ConstantOfShape":
        value = node.attributes.get("value")
        return value.as_tensor().dtype.itemsize if value is not None else FLOAT32_BYTES
    dtype = node.outputs[0].dtype if node.outputs else None
    if dtype is not None:
        return _bytes_per_element(dtype)
    known = [v.const_value.dtype for v in node.inputs if v is not None and v.const_value is not None]
    return max((_bytes_per_element(t) for t in known), default=FLOAT32_BYTES)


def _bytes_per_element(dtype: ir.DataType) -> float:
    """``dtype``'s item size; strings count as 8 bytes (their pointer) since their length is unknown."""
    try:
        return dtype.itemsize
    except TypeError:
        return 8


def _freed_bytes(node: ir.Node) -> float:
    """Bytes of constant inputs only ``node`` reads: folding it frees them (onnxscript's own rule)."""
    return sum(
        v.const_value.nbytes
        for v in node.inputs
        if v is not None and v.const_value is not None and len(v.uses()) == 1 and not v.is_graph_input()
    )


def _frees_large_inputs(node: ir.Node, bodies: set[ir.Graph]) -> bool:
    """Whether ``node`` reads a constant over onnxscript's input limit whose every reader computes from constants alone
    outside ``bodies``, so that folding them all leaves it unread: PyTorch's dynamo export slices an LSTM's weights
    into gate blocks and concatenates them in ONNX's order, which onnxscript keeps computed, as it keeps any op but a
    Transpose reading a large constant that has other readers (it could copy it)."""
    if not _is_onnx(node) or node.op_type in folding.DEFAULT_CONSTANT_FOLD_BLACKLIST:
        return False
    large = [v for v in node.inputs if v is not None and v.const_value is not None and v.const_value.size > folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT]
    return bool(large) and all(not v.is_graph_input() and all(_reads_constants_only(use.node, bodies) for use in v.uses()) for v in large)


def _reads_constants_only(node: ir.Node, bodies: set[ir.Graph]) -> bool:
    """Whether every input of ``node`` is a constant and ``node`` is outside ``bodies`` (so it may be folded)."""
    return node.graph not in bodies and all(v is None or v.const_value is not None for v in node.inputs)


def _subgraphs(model: ir.Model) -> set[ir.Graph]:
    """Every ``Loop``/``If``/``Scan`` body in ``model``, at any depth: what may never run."""
    return set(walk.graphs(model.graph)[1:])


def _all_values(model: ir.Model) -> list[ir.Value]:
    """Every value of every graph: inputs, initializers and node outputs."""
    graphs = walk.graphs(model.graph)
    return [*(v for g in graphs for v in (*g.inputs, *g.initializers.values())), *(v for g in graphs for node in g for v in node.outputs)]


def _is_onnx(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx")


def _mib(size: float) -> str:
    return f"{size / MB:,.0f} MB" if size >= MB else f"{size:,.0f} bytes"


def _count_nodes(model: ir.Model) -> int:
    return sum(1 for _ in walk.nodes(model.graph))
