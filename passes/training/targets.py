"""What ``recover`` trains a graph to reproduce: a model's outputs (and, where the graphs correspond, its residual
stream), each element scaled by the teacher's spread, flattened per sample and joined into one
``[samples, features]`` tensor.

Scaling each element by the teacher's spread over the samples lets one mean squared error weigh box
coordinates in the hundreds and class scores near 0.1, or a hidden state and an embedding, alike.
The teacher runs in ONNX Runtime (it is not trained, so it needs no gradients and runs at ORT's
speed); the student is the trainable view of the graph being recovered.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir
import torch

from onnxcompress import fidelity, io, runtime
from onnxcompress.errors import UsageError
from onnxcompress.fidelity import SPREAD_FLOOR
from onnxcompress.passes.values import behind_reshapes, is_constant
from onnxcompress.passes.training.graph_module import GraphModule
from onnxcompress.passes.training.trimming import Trimming

SCALE_FLOOR = 1e-6
HIDDEN_OPS = ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization")
LABEL_OPS = {"ArgMax": 0, "ArgMin": 0, "TopK": 1}  # op -> which of its outputs holds the indices taken from its first input


def trained_outputs(model: ir.Model, samples: int, probe: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The float outputs with one entry per sample on ``probe`` (``samples`` of them), with their values there
    (the sample axis moved first) and the axis it was on: what recovery can match. A CTC model's
    ``[time, batch, classes]`` logits count as much as a classifier's ``[batch, classes]``."""
    outputs = {name: np.asarray(value) for name, value in runtime.run(model, probe).items()}
    declared = {value.name: sample_axis_declared(model, value) for value in model.graph.outputs}
    axes = {}
    for name, value in outputs.items():
        sized = [axis for axis in range(value.ndim) if value.shape[axis] == samples]
        axis = declared.get(name) if declared.get(name) in sized else sized[0] if sized else None
        if value.dtype.kind == "f" and axis is not None:
            axes[name] = axis
    if not axes:
        labels = [name for name, value in outputs.items() if fidelity.is_categorical(value.dtype)]
        hint = f" ({', '.join(map(repr, labels))} hold labels, which give no gradient: add the scores they are taken from as an output)" if labels else ""
        raise UsageError(f"recover: the model has no float output with one entry per sample to train towards{hint}")
    return {name: np.moveaxis(outputs[name], axis, 0) for name, axis in axes.items()}, axes


def label_scores(model: ir.Model) -> list[str]:
    """When every output of ``model`` holds labels (no float output), the float scores each is an ``ArgMax``,
    ``ArgMin`` or ``TopK`` index of (through casts, reshapes and a lookup in a class table): what recovery can train
    towards in their place, since labels give no gradient. Empty when a float output exists or a label comes from
    elsewhere."""
    if any(value.dtype is not None and value.dtype.is_floating_point() for value in model.graph.outputs):
        return []
    scores = []
    for output in model.graph.outputs:
        value = behind_reshapes(output)
        node = value.producer()
        if node is not None and node.op_type == "ArrayFeatureExtractor" and is_constant(node.inputs[0]):  # a class table
            value = behind_reshapes(node.inputs[1])  # looked up at the indices: skl2onnx's labels
            node = value.producer()
        if node is None or LABEL_OPS.get(node.op_type) != value.index():
            return []
        source = node.inputs[0]
        if source.dtype is not None and not source.dtype.is_floating_point():  # unknown: trained_outputs checks what runs
            return []
        if source.name not in scores:
            scores.append(source.name)
    return scores


def sample_axis_declared(model: ir.Model, value: ir.Value) -> int | None:
    """The axis of ``value`` whose declared dim is the first input's (symbolic) batch dim, if any."""
    first = model.graph.inputs[0].shape if model.graph.inputs else None
    batch = first[0] if first is not None and len(first) and not isinstance(first[0], int) else None
    if batch is None or value.shape is None:
        return None
    return next((axis for axis, dim in enumerate(value.shape) if not isinstance(dim, int) and str(dim) == str(batch)), None)


def residual_stream(teacher: ir.Model, student: ir.Model) -> list[str]:
    """The outputs of the normalisations (``HIDDEN_OPS``) both graphs compute under the same name: the residual
    stream of a transformer, which pruning heads and FFN neurons leaves at its width (``recover`` then keeps
    those of the same shape in both)."""
    def normalised(model: ir.Model) -> list[str]:
        outputs = {value.name for value in model.graph.outputs}
        return [node.outputs[0].name for node in model.graph if node.op_type in HIDDEN_OPS and node.outputs[0].name not in outputs]

    theirs = set(normalised(teacher))
    return [name for name in normalised(student) if name in theirs]


def with_outputs(model: ir.Model, names: list[str]) -> ir.Model:
    """A copy of ``model`` that also outputs the values ``names`` (so ONNX Runtime returns them)."""
    copy = io.clone(model)
    values = {value.name: value for node in copy.graph for value in node.outputs}
    copy.graph.outputs.extend(values[name] for name in names)
    return copy


def hidden_weights(outputs: Mapping[str, np.ndarray], hidden: list[str], weight: float = 1.0) -> dict[str, float]:
    """Per tensor, the factor its scale is multiplied by so that the ``hidden`` tensors together weigh ``weight``
    times what the model's outputs weigh in the squared error (each hidden tensor an equal share), however many
    more elements they have."""
    hidden_set = set(hidden)
    output_elements = sum(value[0].size for name, value in outputs.items() if name not in hidden_set)
    return {name: float(np.sqrt(value[0].size * len(hidden) / (output_elements * weight))) if name in hidden_set else 1.0
            for name, value in outputs.items()}


def output_scales(outputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Per output, each element's spread over the samples (its standard deviation along the first axis), floored
    as the fidelity judge floors a slice's, at ``SPREAD_FLOOR`` of the larger of its own magnitude and the median
    element's: dividing by it makes the squared error read as the slice error the budget judges, so class scores
    near 0.1 count as much as box coordinates in the hundreds beside them."""
    scales = {}
    for name, value in outputs.items():
        array = np.asarray(value, np.float64)
        magnitude = np.sqrt(np.mean(array**2, axis=0))
        floor = np.maximum(SPREAD_FLOOR * np.maximum(magnitude, np.median(magnitude)), SCALE_FLOOR)
        scales[name] = torch.from_numpy(np.maximum(array.std(axis=0), floor).astype(np.float32))
    return scales


def joined(outputs: Mapping[str, torch.Tensor], scales: Mapping[str, torch.Tensor | float], feeds: Mapping[str, torch.Tensor],
           axes: Mapping[str, int] | None = None) -> torch.Tensor:
    """``outputs`` (those in ``scales``, each with its sample axis in ``axes`` moved first) divided by their scales,
    as one ``[samples, features]`` tensor; positions the feeds' attention mask marks as padding are zeroed (what a
    text model computes there is never read)."""
    mask = fidelity.padding_mask({name: tensor.numpy() for name, tensor in feeds.items()})
    parts = []
    for name, scale in scales.items():
        value = outputs[name].movedim((axes or {}).get(name, 0), 0) / scale
        if mask is not None and tuple(value.shape[: mask.ndim]) == mask.shape:
            value = value * torch.from_numpy(mask).reshape(*mask.shape, *[1] * (value.dim() - mask.ndim))
        parts.append(value.reshape(len(value), -1))
    return torch.cat(parts, dim=1)


class Teacher(torch.nn.Module):
    """A fixed ONNX model run in ONNX Runtime, giving its joined, scaled outputs (no gradients)."""

    def __init__(self, model: ir.Model, scales: Mapping[str, torch.Tensor | float], fixed: Mapping[str, np.ndarray],
                 axes: Mapping[str, int], trimming: Trimming = Trimming()) -> None:
        super().__init__()
        self.session = runtime.session(model)
        self.scales, self.fixed, self.axes, self.trimming = dict(scales), dict(fixed), dict(axes), trimming

    def forward(self, **feeds: torch.Tensor) -> torch.Tensor:
        """The teacher's joined outputs on one batch."""
        return joined(self.trimming.evaluate(self._run, feeds), self.scales, feeds, self.axes)

    def _run(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(self.scales)
        values = self.session.run(names, {**{name: tensor.numpy() for name, tensor in feeds.items()}, **self.fixed})
        return {name: torch.from_numpy(np.asarray(value)) for name, value in zip(names, values)}


class Student(torch.nn.Module):
    """The trainable view of the graph being recovered, giving the same joined, scaled outputs."""

    def __init__(self, graph: GraphModule, scales: Mapping[str, torch.Tensor | float], fixed: Mapping[str, np.ndarray],
                 axes: Mapping[str, int], trimming: Trimming = Trimming()) -> None:
        super().__init__()
        self.graph = graph
        self.scales, self.fixed, self.axes = dict(scales), {name: torch.as_tensor(a) for name, a in fixed.items()}, dict(axes)
        self.trimming = trimming

    def forward(self, **feeds: torch.Tensor) -> torch.Tensor:
        """The student's joined outputs (and hidden states) on one batch (differentiable in the graph's weights)."""
        values = self.trimming.evaluate(lambda cut: {name: v for name, v in self.graph.evaluate({**cut, **self.fixed}).items() if name in self.scales}, feeds)
        return joined(values, self.scales, feeds, self.axes)

