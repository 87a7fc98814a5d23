"""ONNX Runtime's quantizers driven in memory, with ranges we calibrated, and the result put back.

We build on ORT's ``QDQQuantizer`` (static) and ``ONNXQuantizer`` in IntegerOps mode (dynamic)
rather than re-deriving their rules for which ops ORT's CPU kernels fuse; what we change is the
input to them: ranges from our own estimators (``TensorsData``), a CPU-aware type choice, a proper
opset conversion, and ``DefaultTensorType`` so graphs holding ORT contrib ops (after ``fuse``) do
not crash the dynamic quantizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from onnxcompress.passes.quantization.support.guard import at_qdq_opset
from onnxcompress.quiet import quiet
from onnxcompress.passes.quantization.support.target import QuantTarget

# Ops ORT's CPU EP runs in int8 (or drops Q/DQ around) so Conv/MatMul/Gemm chains stay fused.
# Tile has no rule in ORT's quantizer registry (its generic Q/DQ wrapping applies); ORT drops the Q/DQ around it.
STATIC_OP_TYPES = (
    "Conv", "MatMul", "Gemm", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool",
    "Relu", "Clip", "Concat", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
    "Sigmoid", "Resize", "Tile",
)
# LSTM: ORT's DynamicQuantizeLSTM (a 2-layer LSTM of 512 from PyTorch ran 3.4x faster at a quarter of the size)
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Attention", "LSTM", "Gather")
STATIC_EXTRA_OPTIONS = {"ActivationSymmetric": False, "WeightSymmetric": True}
DYNAMIC_EXTRA_OPTIONS = {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT, "EnableSubgraph": True}
Ranges = Mapping[str, tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which nodes the quantizer may touch: by op type, minus excluded node names (or only ``only``)."""

    op_types: Sequence[str]
    exclude: Sequence[str] = ()
    only: Sequence[str] = ()

    def covers(self, name: str) -> bool:
        """True when the node named ``name`` is quantized under this selection (if its op type is)."""
        return name not in self.exclude and (not self.only or name in self.only)

    def without(self, names: Sequence[str]) -> Selection:
        """This selection with the nodes ``names`` kept in float."""
        if not names:
            return self
        return dataclasses.replace(self, exclude=[*self.exclude, *names], only=[n for n in self.only if n not in names])


def with_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` at a QDQ-capable opset, with inferred value types (what ORT's quantizers read and calibrate by).

    onnx's inference stops at ops it has no schema for (the com.microsoft ops of ORT's transformer optimizer),
    leaving what follows them untyped, so never calibrated, and ORT's quantizer then fails on a bias whose input
    has no scale; ORT's symbolic shape inference knows those ops and types the rest."""
    from onnxruntime.quantization.quant_utils import save_and_reload_model_with_shape_infer

    inferred = save_and_reload_model_with_shape_infer(at_qdq_opset(proto))
    return _symbolic_shapes(inferred) if _untyped_outputs(inferred) else inferred


def _untyped_outputs(proto: onnx.ModelProto) -> list[str]:
    """Node outputs of the main graph that no input, value_info or output types."""
    typed = {v.name for v in _typed_values(proto)}
    return [name for node in proto.graph.node for name in node.output if name and name not in typed]


def _typed_values(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The main graph's inputs, value_info and outputs: every value with a recorded type and shape."""
    return [*proto.graph.input, *proto.graph.value_info, *proto.graph.output]


def _symbolic_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` through ORT's symbolic shape inference, or as it is when that cannot follow it."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        with quiet():
            return SymbolicShapeInference.infer_shapes(proto, auto_merge=True)
    except Exception:  # its own limits (an op it has no rule for, a shape it cannot merge): onnx's types stand
        return proto


def tensors_to_calibrate(proto: onnx.ModelProto, op_types: Sequence[str]) -> list[str]:
    """Float activations read or written by the nodes that will be quantized (ORT's calibrator's choice),
    without the empty ones (``empty_activations``)."""
    empty = set(empty_activations(proto, op_types))
    return [name for name in _activations(proto, op_types) if name not in empty]


def empty_activations(proto: onnx.ModelProto, op_types: Sequence[str]) -> list[str]:
    """The float activations of quantized nodes that have no elements (``empty_tensors``: a ``Resize``'s
    empty ``roi`` Constant): there is no value to take a range of, and ORT quantizes none of them."""
    empty = empty_tensors(proto)
    return [name for name in _activations(proto, op_types) if name in empty]


def _activations(proto: onnx.ModelProto, op_types: Sequence[str]) -> list[str]:
    """Float tensors, other than initializers, read or written by nodes of ``op_types``, in graph order."""
    floats = {v.name for v in _typed_values(proto) if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    weights = {t.name for t in proto.graph.initializer}
    wanted: dict[str, None] = {}
    for node in proto.graph.node:
        if node.op_type in op_types:
            for name in [*node.input, *node.output]:
                if name in floats and name not in weights:
                    wanted[name] = None
    return list(wanted)


def empty_tensors(proto: onnx.ModelProto) -> set[str]:
    """Tensors of no elements: an inferred shape with a 0 dimension, or a ``Constant`` whose value is empty."""
    shaped = {v.name for v in _typed_values(proto) if any(d.HasField("dim_value") and d.dim_value == 0 for d in v.type.tensor_type.shape.dim)}
    constants = {
        node.output[0] for node in proto.graph.node
        if node.op_type == "Constant" and any(a.name == "value" and 0 in a.t.dims for a in node.attribute)
    }
    return shaped | constants


def quantize_qdq(proto: onnx.ModelProto, ranges: Ranges, target: QuantTarget, *, per_channel: bool, selection: Selection) -> onnx.ModelProto:
    """QDQ model of ``proto`` (already through ``with_shapes``) using ``ranges`` for its activations."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    data = {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in ranges.items()}
    activation, weight = target.ort_types()
    quantizer = QDQQuantizer(
        onnx.ModelProto.FromString(proto.SerializeToString()),
        per_channel, target.reduce_range, weight, activation,
        TensorsData(CalibrationMethod.MinMax, data),
        list(selection.only), list(selection.exclude), list(selection.op_types),
        dict(STATIC_EXTRA_OPTIONS),
    )
    with quiet():  # ORT's quantizers warn on the root logger; what matters is in our notes
        return quantizer.quantize_model()


def quantize_integer(proto: onnx.ModelProto, target: QuantTarget, *, per_channel: bool, selection: Selection) -> onnx.ModelProto:
    """Dynamically quantized model of ``proto`` (already through ``with_shapes``): weights int8, activations at run time."""
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.quant_utils import QuantizationMode, QuantType

    _, weight = target.ort_types()
    quantizer = ONNXQuantizer(
        onnx.ModelProto.FromString(proto.SerializeToString()),
        per_channel, target.reduce_range, QuantizationMode.IntegerOps, False,
        weight, QuantType.QUInt8, None,
        list(selection.only), list(selection.exclude), list(selection.op_types),
        dict(DYNAMIC_EXTRA_OPTIONS),
    )
    with quiet():  # ORT's quantizers warn on the root logger; what matters is in our notes
        return quantizer.quantize_model()
