"""A trainable view of an ONNX graph: a ``torch.nn.Module`` whose parameters are the graph's float weights.

The module evaluates the graph node by node with ``torch_ops`` (no source ``nn.Module`` and no
converter: onnx2torch, the converter we measured against, cannot be imported beside torch 2.13
because it needs torchvision). Its parameters *are* the graph's float initializers of more than
one element, so ``write_back`` puts trained values into the same graph: the structure is unchanged
and every pass after it sees an ordinary model. Scalars and BatchNormalization statistics stay
fixed (they are constants of the arithmetic or running averages, not weights gradients should move).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir
import torch

from onnxcompress.passes.training import fake_quant
from onnxcompress.passes.training.torch_ops import op, to_numpy, to_torch, unsupported_ops
from onnxcompress.passes.training.untrainable import untrainable

HALF_PRECISION = (torch.float16, torch.bfloat16)  # weights of these types keep float32 copies to train: Adam's small steps vanish in them
FIXED_INPUTS = {"BatchNormalization": (3, 4), "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}  # statistics, quantization grids


class GraphModule(torch.nn.Module):
    """``model``'s main graph as a module: ``forward(feeds)`` gives its outputs by name, ``write_back()``
    stores the trained parameters in ``model``'s initializers (the same objects, so ``model`` changes)."""

    def __init__(self, model: ir.Model) -> None:
        super().__init__()
        refuse_untrainable(model)
        self.model = model
        self.opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        fixed = _fixed_initializers(model.graph)
        grids = quantized_weights(model.graph)
        self.names: dict[str, str] = {}  # parameter key -> initializer name
        self.grids: dict[str, Grid] = {}  # parameter key -> the grid a quantized weight is rounded to
        self.half: dict[str, torch.dtype] = {}  # parameter key -> the half-precision type its initializer holds
        self._constants: dict[str, torch.Tensor] = {}
        for index, (name, value) in enumerate(model.graph.initializers.items()):
            tensor = to_torch(value.const_value.numpy())
            key = f"p{index}"
            if name in grids and tensor.numel() > 1:  # trained as its float value, rounded to its grid on every evaluation
                self.grids[key] = grids[name]
                self.register_parameter(key, torch.nn.Parameter(fake_quant.dequantize(tensor, *grids[name][:3])))
                self.names[key] = name
            elif tensor.is_floating_point() and tensor.numel() > 1 and name not in fixed:
                if tensor.dtype in HALF_PRECISION:  # trained in float32, handed to the graph in its own type
                    self.half[key] = tensor.dtype
                self.register_parameter(key, torch.nn.Parameter(tensor.float()))
                self.names[key] = name
            else:
                self._constants[name] = tensor
        for node in model.graph:
            if node.op_type == "Constant":
                self._constants[node.outputs[0].name] = to_torch(_constant_node_value(node))

    def forward(self, feeds: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, torch.Tensor]:
        """The graph's outputs on ``feeds`` (arrays or tensors by input name)."""
        values = self.evaluate(feeds)
        return {out.name: values[out.name] for out in self.model.graph.outputs}

    def evaluate(self, feeds: Mapping[str, torch.Tensor | np.ndarray], watch: Iterable[str] = ()) -> dict[str, torch.Tensor]:
        """Every value of the graph on ``feeds`` by name; each value in ``watch`` records its gradient (``.grad`` is
        then ∂loss/∂value) while gradients still flow through it to the values and weights it was computed from."""
        watched = set(watch)
        values: dict[str, torch.Tensor] = {**self._constants}
        values.update({self.names[key]: self._stored(key, parameter) for key, parameter in self.named_parameters()})
        values.update({name: to_torch(array) for name, array in feeds.items()})
        for node in self.model.graph:
            if node.op_type == "Constant":
                continue
            args = [values[v.name] if v is not None and v.name else None for v in node.inputs]
            try:
                result = op(node)(node, self.opset, *args)
            except NotImplementedError as exc:  # torch has no kernel for these operand types (uint32 arithmetic, say)
                raise untrainable(f"{node.op_type} {node.name!r}: {str(exc).splitlines()[0]}") from None
            for output, tensor in zip(node.outputs, result if isinstance(result, tuple) else (result,)):
                values[output.name] = _recording_gradient(tensor) if output.name in watched else tensor
        return values

    def write_back(self) -> int:
        """Copy every parameter into its initializer (keeping its dtype); returns how many changed."""
        changed = 0
        for key, parameter in self.named_parameters():
            value = self.model.graph.initializers[self.names[key]]
            old = value.const_value.numpy()
            new = to_numpy(self._stored(key, parameter).detach()).astype(old.dtype)
            if not np.array_equal(old, new):
                value.const_value = ir.tensor(new, name=value.name)
                changed += 1
        return changed


    def _stored(self, key: str, parameter: torch.Tensor) -> torch.Tensor:
        """What the graph holds for a parameter: its value (in the initializer's type), or for a quantized weight its
        integers (as floats)."""
        if key not in self.grids:
            return parameter.to(self.half[key]) if key in self.half else parameter
        scale, zero_point, axis, bounds = self.grids[key]
        return fake_quant.quantize(parameter, scale, zero_point, axis, bounds)


Grid = tuple[torch.Tensor, "torch.Tensor | None", int, tuple[int, int]]  # scale, zero point, axis, integer bounds


def quantized_weights(graph: ir.Graph) -> dict[str, Grid]:
    """The integer initializers read only as the input of ``DequantizeLinear`` nodes with constant scales (a QDQ
    model's weights and biases), each with the grid it is quantized on."""
    consumers: dict[str, list[ir.Node]] = {}
    for node in graph:
        for index, value in enumerate(node.inputs):
            if value is not None and value.name in graph.initializers:
                consumers.setdefault(value.name, []).append(node if node.op_type == "DequantizeLinear" and index == 0 else None)
    grids = {}
    for name, nodes in consumers.items():
        dtype = graph.initializers[name].const_value.dtype
        if dtype not in fake_quant.RANGES or None in nodes or len(nodes) != 1:
            continue
        (node,) = nodes
        scale, zero_point = (_initializer(graph, node.inputs[i]) if i < len(node.inputs) else None for i in (1, 2))
        if scale is not None and not node.attributes.get_int("block_size", 0):
            grids[name] = (scale, zero_point, node.attributes.get_int("axis", 1), fake_quant.RANGES[dtype])
    return grids


def _initializer(graph: ir.Graph, value: ir.Value | None) -> torch.Tensor | None:
    if value is None or value.name not in graph.initializers:
        return None
    return to_torch(graph.initializers[value.name].const_value.numpy())


def _recording_gradient(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, its gradient kept in ``.grad`` after a backward pass; one computed from nothing trainable becomes a
    leaf that asks for one (a leaf cut from its inputs would stop the gradients of every watched value before it)."""
    if tensor.requires_grad:
        tensor.retain_grad()
        return tensor
    return tensor.detach().requires_grad_(True)


def refuse_untrainable(model: ir.Model) -> None:
    """A one-line ``UsageError`` naming the ops (or control flow) the trainable view cannot run."""
    unsupported = unsupported_ops(model.graph)
    if unsupported:
        raise untrainable(f"op(s) {', '.join(unsupported)} are not supported")


def _fixed_initializers(graph: ir.Graph) -> set[str]:
    return {node.inputs[i].name for node in graph for i in FIXED_INPUTS.get(node.op_type, ())
            if i < len(node.inputs) and node.inputs[i] is not None}


def _constant_node_value(node: ir.Node) -> np.ndarray:
    """A ``Constant`` node's value, whichever attribute holds it."""
    for name, attribute in node.attributes.items():
        if name == "value":
            return attribute.as_tensor().numpy()
        if name in ("value_float", "value_int"):
            return np.array(attribute.value, np.float32 if name == "value_float" else np.int64)
        if name in ("value_floats", "value_ints"):
            return np.array(list(attribute.value), np.float32 if name == "value_floats" else np.int64)
    raise untrainable(f"Constant node {node.name!r} has no numeric value")
