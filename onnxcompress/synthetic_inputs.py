"""Synthetic inputs that drive any model: a value for every ONNX type, values its graph accepts, realistic sizes.

A model's signature gives each input's type and part of its shape; the graph says the rest. Each
rule below reads one thing from the graph:

- sizes: a dimension named like one already chosen takes the same size, and one named by arithmetic on
  others (``past_sequence_length + sequence_length``, as exporters write a key-value cache's mask) their
  result, as does a mask's length beside a cache when it is named on its own (the dynamo exporter's ``s53``);
  a dynamic channel axis (Optimum's ``[batch_size, num_channels, height, width]``) the input channels of
  the ``Conv`` reading it; the first axis (and the
  batch axis of a recurrent state, ``[layers, batch, hidden]``) is the batch; the height and width
  of an image-like input (``[N, C, H, W]`` or ``[N, H, W, C]`` with 1-4 channels; not a cache, whose
  ``[N, heads, T, D]`` may have as few heads) are ``IMAGE_SIDE``
  rounded up to the graph's total stride; any other dynamic dimension is a sequence of
  ``SEQUENCE_LENGTH``;
- values by type: strings are short ASCII words, sequences hold two tensors, optionals a tensor;
- values by name: masks are ones, token-type/segment ids zeros, recurrent state and caches zeros
  (a state is named like one or comes back as an output named after it);
- values by consumer (``ARGUMENT_RULES``): an input read, directly or through casts and reshapes,
  as an ``If`` condition, a ``Loop`` trip count, a comparison with a constant (a sample rate
  compared with 16000), a shape, axes, sizes, scales, split sizes, indices or a divisor gets a
  value that op accepts;
- otherwise: floats are standard normal, integers in [0, 10), booleans random, each drawn in the
  input's own type.

Nothing is drawn until the shapes chosen are known to fit the memory budget ``io.array_budget()``
(the one an ``.npz`` of inputs is held to): a shape past it is one ``UsageError`` line.

An input read as an argument whose rule found no value, or a scalar (rank 0 or ``[1]``) that
matched no rule, is a *guess* (a scalar more likely selects what the graph does than carries data).
When ONNX Runtime fails on the inputs, ``SyntheticFeeds.fix`` names the guesses (or the dims chosen)
and says to pass ``--inputs``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.errors import UsageError

SEQUENCE_LENGTH = 128
IMAGE_SIDE = 224
IMAGE_CHANNELS = range(1, 5)
FEW = 3  # a Loop's trip count, the boxes NonMaxSuppression keeps per class
RANGE_LENGTH = 8
SEQUENCE_ITEMS = 2
UNKNOWN_ELEMENT_SHAPE = (4,)
SMALL_INTEGERS = 10
WORDS = ("alpha", "bravo", "delta", "echo", "golf", "hotel", "kilo", "lima", "oscar", "tango")
MASK_NAME = re.compile(r"mask", re.IGNORECASE)
SEGMENT_NAME = re.compile(r"token_type|segment", re.IGNORECASE)
STATE_NAME = re.compile(r"state|past|cache|^[hc]0?$|^[hc]_?in$", re.IGNORECASE)
DIM_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}
PASS_THROUGH = {"Cast", "CastLike", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"}
STRIDED = {"Conv", "MaxPool", "AveragePool", "LpPool"}


class SyntheticFeeds(dict):
    """Inputs by name, plus how they were made: the shapes chosen for dynamic dims and the guessed values.

    ``ran`` is set by ``runtime.run`` once a model ran on them: after that a failure is the model's.
    """

    def __init__(self, arrays: Mapping[str, Any], *, dynamic: Mapping[str, tuple[int, ...]], guesses: list[str]) -> None:
        super().__init__(arrays)
        self.dynamic = dict(dynamic)
        self.guesses = list(guesses)
        self.ran = False

    def fix(self) -> str:
        """What to do when a model fails on these inputs, naming the inputs most likely at fault."""
        if self.guesses:
            names = ", ".join(repr(name) for name in self.guesses)
            return f"no value could be inferred for {names} from the graph: pass --inputs FILE.npz with a value for {names}"
        if self.dynamic:
            return (f"dynamic dims were set to {describe_shapes(self.dynamic)}: pin the sizes the model needs with "
                    "--input-shape NAME:d0,d1,... or pass --inputs FILE.npz")
        return "pass --inputs FILE.npz with real inputs"


def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """``shapes`` as the ``--input-shape`` arguments that pin them."""
    return " ".join(f"--input-shape {name}:{','.join(map(str, dims))}" for name, dims in shapes.items())


def synthetic_inputs(
    model: ir.Model,
    *,
    batch: int = 1,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
) -> SyntheticFeeds:
    """Inputs matching ``model``'s signature that its graph accepts (the rules in this module's docstring).

    ``shapes`` pins an input's whole shape; its named dynamic dims then hold for the other inputs too.
    """
    rng = np.random.default_rng(seed)
    chosen = input_shapes(model, batch=batch, shapes=shapes)
    check_budget(model, chosen)
    arrays, guesses = {}, []
    for value in fed_inputs(model.graph):
        arrays[value.name], guessed = _value(value, chosen[value.name], chosen, rng)
        if guessed:
            guesses.append(value.name)
    return SyntheticFeeds(arrays, dynamic={name: chosen[name] for name in dynamic_inputs(model)}, guesses=guesses)


def check_budget(model: ir.Model, chosen: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse, in one line naming the largest input, synthetic inputs of ``chosen`` shapes past ``io.array_budget()``."""
    sizes = {v.name: _input_bytes(v, chosen[v.name]) for v in fed_inputs(model.graph)}
    total, budget = sum(sizes.values()), io.array_budget()
    if total <= budget:
        return
    name = max(sizes, key=sizes.__getitem__)
    dims = ",".join(map(str, chosen[name]))
    raise UsageError(
        f"synthetic input {name!r} of shape [{dims}] takes the inputs to {io.over_budget(total, budget)}: "
        f"pass a smaller --batch or --input-shape {name}:d0,d1,..., or real inputs with --inputs FILE.npz"
    )


def _input_bytes(value: ir.Value, shape: tuple[int, ...]) -> int:
    """Bytes a synthetic value of ``shape`` takes for ``value``'s type (a string counts as a pointer)."""
    type_ = value.type.elem_type if isinstance(value.type, ir.OptionalType) else value.type
    items = SEQUENCE_ITEMS if isinstance(type_, ir.SequenceType) else 1
    dtype = (type_.elem_type.dtype if isinstance(type_, ir.SequenceType) else type_.dtype) if type_ is not None else ir.DataType.FLOAT
    return items * math.prod(shape) * _numpy_dtype(value, dtype).itemsize


def fed_inputs(graph: ir.Graph) -> list[ir.Value]:
    """The graph inputs a caller must feed (those backed by an initializer are optional)."""
    return [v for v in graph.inputs if v.name not in graph.initializers]


def input_shapes(model: ir.Model, *, batch: int = 1, shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """The shape synthetic inputs give each fed input: pinned by ``shapes``, else the signature's with dynamic dims chosen."""
    pins = dict(shapes or {})
    inputs = fed_inputs(model.graph)
    check_pinned_names(model, pins)
    symbols = _pinned_symbols(inputs, pins)
    sizes = _Sizes(model.graph)
    chosen: dict[str, tuple[int, ...]] = {}
    for value in sorted(inputs, key=lambda v: follows_other_inputs(v, inputs)):  # what it follows is chosen first
        if value.name in pins:
            chosen[value.name] = tuple(pins[value.name])
        else:
            shape = _default_shape(value, batch, symbols, sizes)
            length = _cache_mask_length(value, inputs, chosen)
            chosen[value.name] = shape if length is None else (*shape[:-1], length)
    return {value.name: chosen[value.name] for value in inputs}


def check_pinned_names(model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse, in one line, ``--input-shape`` pins naming inputs ``model`` does not have."""
    unknown = set(shapes) - {v.name for v in model.graph.inputs}
    if unknown:
        raise UsageError(f"--input-shape names unknown inputs {sorted(unknown)}; inputs are {[v.name for v in model.graph.inputs]}")


def dynamic_inputs(model: ir.Model) -> list[str]:
    """The fed inputs with a dynamic (or unknown) dimension besides the batch ``--batch`` sets: those whose
    synthetic shape a run must report."""
    return [v.name for v in fed_inputs(model.graph) if _has_chosen_dim(v)]


def _has_chosen_dim(value: ir.Value) -> bool:
    if value.shape is None:
        return True
    batch_axis = _batch_axis(value)
    return any(not _is_static(dim) and axis != batch_axis for axis, dim in enumerate(value.shape))


def _is_static(dim: object) -> bool:
    return isinstance(dim, int) and dim >= 0


def _symbol(dim: object) -> str | None:
    """The name of a dynamic dimension, when it has one other inputs can share."""
    name = getattr(dim, "value", None)
    return name if isinstance(name, str) and name and name != "?" else None


def follows_other_inputs(value: ir.Value, inputs: list[ir.Value]) -> bool:
    """Whether a dynamic dim of ``value`` follows from other inputs' dims: named by arithmetic on them, or the length
    of a mask beside a cache (the cached and the new positions)."""
    return _has_dim_arithmetic(value) or _beside_a_cache(value, inputs)


def _beside_a_cache(value: ir.Value, inputs: list[ir.Value]) -> bool:
    """An integer or boolean mask ``[batch, length]`` whose length no other input shares, in a model with a cache."""
    if not MASK_NAME.search(value.name or "") or value.shape is None or len(value.shape) != 2 or _is_static(value.shape[1]):
        return False
    if value.dtype is None or value.dtype.numpy().kind not in "iub":
        return False
    others = [v for v in inputs if v is not value]
    shared = _symbol(value.shape[1]) is not None and any(
        v.shape is not None and any(_symbol(d) == _symbol(value.shape[1]) for d in v.shape) for v in others)
    return not shared and any(_cache_length_axis(v) is not None for v in others)


def _cache_length_axis(value: ir.Value) -> int | None:
    """The dynamic axis of a cache input other than its batch (the cached positions), None for other inputs."""
    if not _is_state(value) or value.shape is None:
        return None
    return next((axis for axis, dim in enumerate(value.shape) if not _is_static(dim) and axis != _batch_axis(value)), None)


def _cache_mask_length(value: ir.Value, inputs: list[ir.Value], chosen: Mapping[str, tuple[int, ...]]) -> int | None:
    """A mask beside a cache covers the cached and the new positions: the cache's length plus axis 1 of the new
    tokens (``input_ids``, or their embeddings), as chosen; None for any other input."""
    if not _beside_a_cache(value, inputs):
        return None
    caches = [(v, _cache_length_axis(v)) for v in inputs if _cache_length_axis(v) is not None and v.name in chosen]
    tokens = [v for v in inputs if v is not value and not MASK_NAME.search(v.name or "") and not _is_state(v)
              and v.shape is not None and len(v.shape) >= 2 and not _is_static(v.shape[1]) and v.name in chosen]
    if not caches or not tokens:
        return None
    cache, axis = caches[0]
    return chosen[cache.name][axis] + chosen[tokens[0].name][1]


def _has_dim_arithmetic(value: ir.Value) -> bool:
    """Whether a dim of ``value`` is named by arithmetic on other dims (``past_sequence_length + sequence_length``)."""
    return value.shape is not None and any(
        _symbol(dim) and isinstance(_parsed(_symbol(dim)), ast.BinOp) for dim in value.shape)


def _parsed(symbol: str) -> ast.expr | None:
    """A dim's name as a Python expression, None when it is not one (``batch size``, ``N?``)."""
    try:
        return ast.parse(symbol, mode="eval").body
    except SyntaxError:
        return None


def _dim_arithmetic(expression: ast.expr | None, symbols: Mapping[str, int]) -> int | None:
    """The value of a dim named by ``+ - * //`` on integers and dims already chosen, None when it is not known."""
    if isinstance(expression, ast.Name):
        return symbols.get(expression.id)
    if isinstance(expression, ast.Constant) and type(expression.value) is int:
        return expression.value
    if isinstance(expression, ast.BinOp) and type(expression.op) in DIM_ARITHMETIC:
        left, right = _dim_arithmetic(expression.left, symbols), _dim_arithmetic(expression.right, symbols)
        if left is not None and right is not None and (right or not isinstance(expression.op, ast.FloorDiv)):
            return DIM_ARITHMETIC[type(expression.op)](left, right)
    return None


def _pinned_symbols(inputs: list[ir.Value], pins: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Sizes of the named dynamic dims of pinned inputs, so every input sharing the name follows the pin."""
    symbols = {}
    for value in inputs:
        if value.name in pins and value.shape is not None and len(value.shape) == len(pins[value.name]):
            for dim, size in zip(value.shape, pins[value.name]):
                if _symbol(dim):
                    symbols[_symbol(dim)] = int(size)
    return symbols


def _default_shape(value: ir.Value, batch: int, symbols: dict[str, int], sizes: _Sizes) -> tuple[int, ...]:
    if value.shape is None:
        if isinstance(value.type, (ir.SequenceType, ir.OptionalType)):
            return UNKNOWN_ELEMENT_SHAPE
        if _consumer_value(value, (), {}, np.random.default_rng(0))[0] is not None:
            return ()  # an If condition or a Loop trip count declared without a shape
        raise UsageError(f"input {value.name!r} has no shape; pin it with --input-shape {value.name}:d0,d1,...")
    dims = []
    for axis, dim in enumerate(value.shape):
        if _is_static(dim):
            dims.append(int(dim))
            continue
        size = symbols.get(_symbol(dim)) or _dim_size(_symbol(dim), symbols) or _dynamic_size(value, axis, batch, sizes)
        if _symbol(dim):
            symbols[_symbol(dim)] = size
        dims.append(size)
    return tuple(dims)


def _dim_size(symbol: str | None, symbols: Mapping[str, int]) -> int | None:
    """The size arithmetic on chosen dims gives a dim (``past_sequence_length + sequence_length``), when positive."""
    size = _dim_arithmetic(_parsed(symbol), symbols) if symbol else None
    return size if size is not None and size > 0 else None


class _Sizes:
    """What the graph says about sizes: its total stride along height and width, and its widest 1-D kernel, each
    read from the whole graph when a dynamic dimension first needs it (a static signature never does)."""

    def __init__(self, graph: ir.Graph) -> None:
        self._graph = graph

    @functools.cached_property
    def strides(self) -> tuple[int, int]:
        """The total stride along height and width (``_total_strides``)."""
        return _total_strides(self._graph)

    @functools.cached_property
    def widest_kernel(self) -> int:
        """The widest 1-D kernel (``_widest_1d_kernel``)."""
        return _widest_1d_kernel(self._graph)


def _dynamic_size(value: ir.Value, axis: int, batch: int, sizes: _Sizes) -> int:
    """The size of one dynamic dimension: the batch, the channels a Conv reads, an image side, or a sequence length."""
    if axis == _batch_axis(value):
        return batch
    channels = _conv_channels(value) if axis == 1 else _head_size(value, axis)
    if channels is not None:
        return channels
    axes = image_axes(value)
    if axis in axes:
        stride = sizes.strides[axes.index(axis)]
        return math.ceil(IMAGE_SIDE / stride) * stride
    return max(SEQUENCE_LENGTH, sizes.widest_kernel)


def _batch_axis(value: ir.Value) -> int:
    """Axis 0, except in a recurrent state laid out ``[layers, batch, hidden]`` (a fixed first dim, dynamic second)."""
    shape = value.shape
    if _is_state(value) and len(shape) == 3 and _is_static(shape[0]) and not _is_static(shape[1]):
        return 1
    return 0


def image_axes(value: ir.Value) -> tuple[int, ...]:
    """The height and width axes of an image-like rank-4 input (1-4 channels first or last), else none."""
    shape = value.shape
    if len(shape) != 4 or _is_state(value):
        return ()
    if (shape[1] if _is_static(shape[1]) else _conv_channels(value)) in IMAGE_CHANNELS:
        return (2, 3)
    if _is_static(shape[3]) and shape[3] in IMAGE_CHANNELS:
        return (1, 2)
    return ()


def _conv_channels(value: ir.Value) -> int | None:
    """The input channels of the ``Conv`` reading ``value`` first (through casts and reshapes), None without one: the
    size a dynamic channel axis must have."""
    if _is_state(value):
        return None
    for node, index in _readers(value):
        if node.op_type == "Conv" and node.domain in ("", "ai.onnx") and index == 0:
            weight = _constant(node.inputs[1]) if len(node.inputs) > 1 else None
            group = node.attributes.get("group")
            if weight is not None and weight.ndim >= 3:
                return int(weight.shape[1]) * (group.as_int() if group is not None else 1)
    return None


def _head_size(value: ir.Value, axis: int) -> int | None:
    """The head size a cache's dynamic last axis must have when ONNX Runtime's ``GroupQueryAttention`` reads it
    (ORT GenAI's models name it ``kv_cache_dim``): the query projection's width over the heads it packs, None
    for any other axis or reader."""
    if axis != len(value.shape) - 1:
        return None
    for node, index in _readers(value):
        if node.op_type == "GroupQueryAttention" and node.domain == "com.microsoft" and index in (3, 4):
            heads, kv_heads = (node.attributes[name].as_int() if name in node.attributes else 0 for name in ("num_heads", "kv_num_heads"))
            packed = len(node.inputs) < 2 or node.inputs[1] is None  # query, key and value in one projection
            width = _projected_width(node.inputs[0])
            parts = heads + 2 * kv_heads if packed else heads
            return width // parts if width and parts and width % parts == 0 else None
    return None


def _projected_width(value: ir.Value) -> int | None:
    """The last dim of a ``MatMul`` by a constant weight that computes ``value`` (through a bias ``Add``)."""
    producer = value.producer()
    if producer is not None and producer.op_type == "Add":
        producer = next((v.producer() for v in producer.inputs if v is not None and v.producer() is not None), None)
    if producer is None or producer.op_type != "MatMul":
        return None
    weight = _constant(producer.inputs[1])
    return int(weight.shape[-1]) if weight is not None and weight.ndim >= 2 else None


def _total_strides(graph: ir.Graph) -> tuple[int, int]:
    """The largest downsampling of height and width from an input to any value: the strides multiplied along the way."""
    reached: dict[ir.Value, tuple[int, int]] = {}
    for node in graph:
        before = [reached.get(v, (1, 1)) for v in node.inputs if v is not None]
        height, width = (max((b[i] for b in before), default=1) for i in (0, 1))
        step_h, step_w = _node_strides(node)
        for output in node.outputs:
            reached[output] = (height * step_h, width * step_w)
    return tuple(max((r[i] for r in reached.values()), default=1) for i in (0, 1))


def _node_strides(node: ir.Node) -> tuple[int, int]:
    attr = node.attributes.get("strides") if node.op_type in STRIDED and node.domain in ("", "ai.onnx") else None
    strides = attr.as_ints() if attr is not None else ()
    return (int(strides[0]), int(strides[1])) if len(strides) == 2 else (1, 1)


def _widest_1d_kernel(graph: ir.Graph) -> int:
    """The widest kernel of a 1-D convolution anywhere in the graph (a waveform must cover it), 0 without one."""
    widths = [0]
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.op_type == "Conv" and node.domain in ("", "ai.onnx"):
            kernel = node.attributes.get("kernel_shape")
            weight = _constant(node.inputs[1]) if len(node.inputs) > 1 else None
            shape = kernel.as_ints() if kernel is not None else (weight.shape[2:] if weight is not None else ())
            widths += list(shape) if len(shape) == 1 else []
    return int(max(widths))


def _value(value: ir.Value, shape: tuple[int, ...], chosen: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> tuple[Any, bool]:
    """A value for one input and whether it is a guess the graph gave no evidence for."""
    type_ = value.type
    if isinstance(type_, ir.OptionalType):
        type_ = type_.elem_type
    if isinstance(type_, ir.SequenceType):
        dtype = type_.elem_type.dtype
        return [_tensor(value, dtype, shape, chosen, rng)[0] for _ in range(SEQUENCE_ITEMS)], False
    dtype = type_.dtype if type_ is not None else ir.DataType.FLOAT
    return _tensor(value, dtype, shape, chosen, rng)


def _tensor(value: ir.Value, dtype: ir.DataType, shape: tuple[int, ...], chosen, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    np_dtype = _numpy_dtype(value, dtype)
    if dtype == ir.DataType.STRING:
        return rng.choice(np.array(WORDS, dtype=object), size=shape), False
    named = _named_value(value, shape, np_dtype)
    if named is not None:
        return named, False
    argument, read_as_argument = _consumer_value(value, shape, chosen, rng)
    if argument is not None:
        return argument.astype(np_dtype), False
    if _is_state(value):
        return np.zeros(shape, np_dtype), False
    return _random(np_dtype, shape, rng), read_as_argument or _is_scalar(shape)


def _numpy_dtype(value: ir.Value, dtype: ir.DataType) -> np.dtype:
    """The numpy type of an input's values; sub-byte types (INT4, FLOAT4E2M1, ...) cannot be fed from Python."""
    if dtype != ir.DataType.STRING and (dtype == ir.DataType.UNDEFINED or dtype.bitwidth < 8):
        raise UsageError(f"input {value.name!r} has type {dtype.name}, which ONNX Runtime's Python API cannot be fed")
    return np.dtype(dtype.numpy())


def _named_value(value: ir.Value, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """Masks are ones and token-type/segment ids zeros: what a tokenizer gives one unpadded sentence."""
    name = value.name or ""
    if dtype.kind in "iub" and MASK_NAME.search(name):
        return np.ones(shape, dtype)
    if dtype.kind in "iu" and SEGMENT_NAME.search(name):
        return np.zeros(shape, dtype)
    return None


def _is_state(value: ir.Value) -> bool:
    """A recurrent state or cache: named like one, or returned as an output named after it (``state`` -> ``stateN``)."""
    name = value.name or ""
    if STATE_NAME.search(name):
        return True
    graph = value.graph
    outputs = graph.outputs if graph is not None else []
    return any(o.name != name and (o.name or "").startswith(name) and _same_shape(o, value) for o in outputs)


def starting_state(value: ir.Value, batch: int) -> np.ndarray | None:
    """The value a sequence starts from at a state or cache input (None for any other input): zeros with ``batch``
    on its batch axis and every other dynamic axis empty, as a key-value cache is before the first token and a
    recurrent state before the first step; what text calibration feeds beside the tokens. An input of a fixed shape
    keeps it (a merged decoder's ``use_cache_branch`` ``[1]``, false: the branch a sequence starts in)."""
    if not _is_state(value) or value.shape is None or value.dtype is None:
        return None
    if all(_is_static(dim) for dim in value.shape):
        return np.zeros([int(dim) for dim in value.shape], _numpy_dtype(value, value.dtype))
    batch_axis = _batch_axis(value)
    shape = [batch if axis == batch_axis else (int(dim) if _is_static(dim) else _head_size(value, axis) or 0)
             for axis, dim in enumerate(value.shape)]
    return np.zeros(shape, _numpy_dtype(value, value.dtype))


def _same_shape(a: ir.Value, b: ir.Value) -> bool:
    return a.shape is not None and b.shape is not None and len(a.shape) == len(b.shape) and all(
        x == y or not (_is_static(x) and _is_static(y)) for x, y in zip(a.shape, b.shape))


def _is_scalar(shape: tuple[int, ...]) -> bool:
    """Rank 0 or ``[1]``: an input more likely to switch what the graph does than to be data, so a random value is a guess."""
    return len(shape) == 0 or shape == (1,)


def _random(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random values drawn in ``dtype`` itself (numpy draws floats in float32 or float64 only: narrower floats
    are drawn in float32), so no wider copy of the input is ever made."""
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape, dtype=np.bool_)
    if dtype.kind in "iu":
        return rng.integers(0, SMALL_INTEGERS, size=shape, dtype=dtype)
    if dtype.kind == "c":
        values = np.empty(shape, dtype)
        values.real = _normal(values.real.dtype, shape, rng)
        values.imag = _normal(values.real.dtype, shape, rng)
        return values
    return _normal(dtype, shape, rng)


def _normal(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype in (np.float32, np.float64):
        return rng.standard_normal(shape, dtype=dtype)
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype)


# Consumer rules: what value an op accepts at one of its inputs.


@dataclasses.dataclass
class Argument:
    """An input read by ``node`` at ``index``: what a consumer rule needs to choose its value.

    ``shape`` is the input's own shape, ``chosen`` the shapes of every fed input.
    """

    node: ir.Node
    index: int
    shape: tuple[int, ...]
    chosen: Mapping[str, tuple[int, ...]]
    rng: np.random.Generator

    @property
    def size(self) -> int:
        """Elements of the input."""
        return math.prod(self.shape)

    def input_shape(self, index: int) -> tuple[int, ...] | None:
        """The shape of the node's input ``index``: chosen for a graph input, else the static one, else None."""
        value = self.node.inputs[index] if index < len(self.node.inputs) else None
        if value is None:
            return None
        if value.is_graph_input() and value.name in self.chosen:
            return self.chosen[value.name]
        if value.shape is not None and all(_is_static(d) for d in value.shape):
            return tuple(value.shape)
        return None

    def attribute(self, name: str, default: int) -> int:
        """An integer attribute of the node."""
        attr = self.node.attributes.get(name)
        return attr.as_int() if attr is not None else default

    def constant(self, index: int) -> np.ndarray | None:
        """The node's input ``index`` when it is a constant (initializer or ``Constant`` node), else None."""
        return _constant(self.node.inputs[index] if index < len(self.node.inputs) else None)


ArgumentRule = Callable[[Argument], "np.ndarray | float | None"]  # one value for every element, or an array


def _true(arg: Argument) -> bool:
    return True


def _false(arg: Argument) -> bool:
    return False


def _zero(arg: Argument) -> int:
    return 0


def _one(arg: Argument) -> int:
    return 1


def _half(arg: Argument) -> float:
    return 0.5


def _few(arg: Argument) -> int:
    return FEW


def _range_limit(arg: Argument) -> int:
    return RANGE_LENGTH


def _keep_dims_shape(arg: Argument) -> np.ndarray:
    """A Reshape target that keeps the leading dims and folds the rest into the last: ``[0, ..., 0, -1]``."""
    return np.array([0] * (arg.size - 1) + [-1])


def _leading_axes(arg: Argument) -> np.ndarray:
    """Axes ``0..k-1``: valid for any input of rank k or more (Unsqueeze, Reduce, Slice, Pad axes)."""
    return np.arange(arg.size)


def _slice_ends(arg: Argument) -> int:
    return np.iinfo(np.int32).max  # past any end, and fits Slice's int32 ends too


def _unit_axes(arg: Argument) -> np.ndarray | None:
    """Squeeze axes: the data's size-1 dims, when it has enough of them."""
    data = arg.input_shape(0)
    ones = [axis for axis, dim in enumerate(data or ()) if dim == 1]
    return np.array(ones[: arg.size]) if len(ones) >= arg.size else None


def _data_shape(arg: Argument) -> np.ndarray | None:
    """Resize sizes: the data's own size along the resized axes (every axis, or the ``axes`` attribute's)."""
    data = arg.input_shape(0)
    if data is None:
        return None
    axes = arg.node.attributes.get("axes")
    sizes = [data[axis % len(data)] for axis in (axes.as_ints() if axes is not None else range(len(data)))]
    return np.array(sizes) if len(sizes) == arg.size else None


def _even_split(arg: Argument) -> np.ndarray | None:
    """Split sizes that add up to the split axis: as even as possible."""
    data = arg.input_shape(0)
    if data is None or not arg.size:
        return None
    length = data[arg.attribute("axis", 0) % len(data)]
    return np.array([length // arg.size + (i < length % arg.size) for i in range(arg.size)])


def _nonzero_divisor(arg: Argument) -> np.ndarray | None:
    """An integer divisor (Div, Mod) in [1, 10): integer division by zero is an error."""
    dtype = value_dtype(arg.node.inputs[arg.index])
    return arg.rng.integers(1, SMALL_INTEGERS, size=arg.shape) if dtype is not None and dtype.kind in "iu" else None


def _indices(arg: Argument, axis: int) -> np.ndarray | None:
    """Indices inside the data's extent along ``axis`` (an embedding table's rows for a token id)."""
    data = arg.input_shape(0)
    if data is None or not data:
        return None
    return arg.rng.integers(0, max(data[axis % len(data)], 1), size=arg.shape)


def _axis_indices(arg: Argument) -> np.ndarray | None:
    return _indices(arg, arg.attribute("axis", 0))


def _nd_indices(arg: Argument) -> np.ndarray | None:
    """GatherND/ScatterND indices: each index tuple inside the data's leading dims."""
    data = arg.input_shape(0)
    if data is None or not arg.shape:
        return None
    depth = min(arg.shape[-1], len(data))
    batch_dims = arg.attribute("batch_dims", 0)
    bounds = np.array([max(d, 1) for d in data[batch_dims : batch_dims + depth]] or [1])
    return (arg.rng.random(arg.shape) * np.resize(bounds, arg.shape[-1])).astype(np.int64)


def _sequence_lengths(arg: Argument) -> np.ndarray | None:
    """ReverseSequence lengths: at most the time axis."""
    data = arg.input_shape(0)
    if data is None:
        return None
    steps = data[arg.attribute("time_axis", 0)]
    return arg.rng.integers(0, steps + 1, size=arg.shape)


def _recurrent_lengths(arg: Argument) -> int | None:
    """RNN/GRU/LSTM sequence lengths: the whole sequence (the time axis of X: 0, or 1 with ``layout=1``)."""
    data = arg.input_shape(0)
    return data[arg.attribute("layout", 0)] if data is not None else None


def _class_indices(arg: Argument) -> np.ndarray | None:
    """Loss targets: class indices below the class count (the scores' axis 1, or the class weights' length)."""
    scores, weights = arg.input_shape(0), arg.input_shape(2)
    classes = scores[1] if scores is not None and len(scores) > 1 else (weights[0] if weights else None)
    return arg.rng.integers(0, classes, size=arg.shape) if classes else None


def _from_data_only(arg: Argument) -> None:
    """Arguments only real data can give (Col2Im's image and block shapes, AffineGrid's size): named when a run fails."""
    return None


def _compared_constant(arg: Argument) -> np.ndarray | None:
    """The constant the input is compared with (a sample rate compared with 16000 selects that branch)."""
    other = arg.constant(1 - arg.index)
    return other.reshape(-1)[:1] if other is not None and other.size else None


REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
COMPARISONS = ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
ARGUMENT_RULES: dict[tuple[str, int], ArgumentRule] = {
    ("If", 0): _true,
    ("Loop", 0): _few,
    ("Loop", 1): _true,
    **{(op, index): _compared_constant for op in COMPARISONS for index in (0, 1)},
    ("Reshape", 1): _keep_dims_shape,
    ("Expand", 1): _one,
    ("Tile", 1): _one,
    ("ConstantOfShape", 0): _one,
    ("Range", 0): _zero,
    ("Range", 1): _range_limit,
    ("Range", 2): _one,
    ("Slice", 1): _zero,
    ("Slice", 2): _slice_ends,
    ("Slice", 3): _leading_axes,
    ("Slice", 4): _one,
    ("Resize", 2): _one,
    ("Resize", 3): _data_shape,
    ("Upsample", 1): _one,
    ("Unsqueeze", 1): _leading_axes,
    ("Squeeze", 1): _unit_axes,
    **{(op, 1): _leading_axes for op in REDUCTIONS},
    ("Split", 1): _even_split,
    ("SplitToSequence", 1): _even_split,
    ("Pad", 1): _zero,
    ("Pad", 3): _leading_axes,
    ("TopK", 1): _one,
    ("CumSum", 1): _zero,
    ("CumProd", 1): _zero,
    ("Trilu", 1): _zero,
    ("Div", 1): _nonzero_divisor,
    ("Mod", 1): _nonzero_divisor,
    ("Gather", 1): _axis_indices,
    ("GatherElements", 1): _axis_indices,
    ("ScatterElements", 1): _axis_indices,
    ("Scatter", 1): _axis_indices,
    ("GatherND", 1): _nd_indices,
    ("ScatterND", 1): _nd_indices,
    ("ReverseSequence", 1): _sequence_lengths,
    **{(op, 4): _recurrent_lengths for op in ("RNN", "GRU", "LSTM")},
    ("NegativeLogLikelihoodLoss", 1): _class_indices,
    ("SoftmaxCrossEntropyLoss", 1): _class_indices,
    ("NonMaxSuppression", 2): _few,
    ("NonMaxSuppression", 3): _half,
    ("NonMaxSuppression", 4): _zero,
    ("Col2Im", 1): _from_data_only,
    ("Col2Im", 2): _from_data_only,
    ("AffineGrid", 1): _from_data_only,
    ("Dropout", 1): _half,
    ("Dropout", 2): _false,
}


def _consumer_value(value: ir.Value, shape: tuple[int, ...], chosen, rng: np.random.Generator) -> tuple[np.ndarray | None, bool]:
    """The value the first op reading ``value`` with a rule accepts, shaped like ``value`` (or None), and whether
    any op reads it as an argument: one whose rule found no value needs a real one."""
    argument = False
    for node, index in _readers(value):
        rule = ARGUMENT_RULES.get((node.op_type, index)) if node.domain in ("", "ai.onnx") else None
        argument = argument or rule is not None
        found = rule(Argument(node, index, shape, chosen, rng)) if rule else None
        if found is None:
            continue
        found = np.asarray(found)
        if found.ndim and found.size == math.prod(shape):
            return found.reshape(shape), True
        if found.size == 1:
            return np.full(shape, found.reshape(-1)[0]), True
    return None, argument


def _readers(value: ir.Value) -> Iterator[tuple[ir.Node, int]]:
    """Where ``value`` is read, looking through ops that pass its values on unchanged (casts, reshapes)."""
    frontier, seen = [value], set()
    while frontier:
        for node, index in frontier.pop(0).uses():
            if (id(node), index) in seen:
                continue
            seen.add((id(node), index))
            yield node, index
            if node.op_type in PASS_THROUGH and index == 0:
                frontier.extend(node.outputs)


def value_dtype(value: ir.Value | None) -> np.dtype | None:
    """The numpy type of a tensor value, None for no value, other values or types numpy has no name for."""
    try:
        return np.dtype(value.dtype.numpy()) if value is not None and value.dtype is not None else None
    except (TypeError, ValueError):
        return None


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is an initializer or a ``Constant`` node's output (any of its value attributes)."""
    if value is None or value.is_graph_input():
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is None or producer.op_type != "Constant":
        return None
    for name, attr in producer.attributes.items():
        if name == "value":
            return attr.as_tensor().numpy()
        if name in ("value_int", "value_float", "value_ints", "value_floats"):
            return np.asarray(attr.value)
    return None
