"""Checks that calibration batches fit a model: names, dtypes, shapes (dynamic dims included), finite values.

Every mismatch is one ``UsageError`` line naming the input, so a wrong file never silently produces
a wrongly calibrated model. ``check_batch`` is applied batch by batch while activations stream, so
validation costs no extra pass over the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx_ir as ir

from onnxcompress.errors import UsageError


def model_inputs(model: ir.Model) -> list[ir.Value]:
    """The graph inputs a caller must feed (inputs that are also initializers are optional)."""
    return [v for v in model.graph.inputs if v.name not in model.graph.initializers]


def check_names(names: Iterable[str], model: ir.Model) -> None:
    """Raise unless ``names`` are exactly the model's required inputs."""
    given, wanted = set(names), [v.name for v in model_inputs(model)]
    missing = [n for n in wanted if n not in given]
    if missing:
        raise UsageError(f"calibration data lacks model input(s) {missing}; it has {sorted(given)}")
    optional = set(model.graph.initializers)
    unknown = sorted(given - set(wanted) - optional)
    if unknown:
        raise UsageError(f"calibration data has input(s) {unknown} the model does not take; its inputs are {wanted}")


def check_batch(batch: Mapping[str, np.ndarray], model: ir.Model, index: int) -> None:
    """Raise unless batch number ``index`` has the model's dtypes, shapes and only finite values."""
    symbols: dict[str, int] = {}
    for value in model_inputs(model):
        array = batch[value.name]
        _check_dtype(value, array)
        _check_shape(value, array, symbols)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise UsageError(f"calibration input {value.name!r} has NaN or inf values (batch {index})")


def checked_batches(reader, model: ir.Model) -> Iterator[dict[str, np.ndarray]]:
    """The reader's batches, each checked against ``model``; raises if the reader yields none."""
    check_names(reader.input_names, model)
    samples = 0
    for index, batch in enumerate(reader.batches()):
        check_batch(batch, model, index)
        samples += len(next(iter(batch.values()))) if batch else 0
        yield batch
    if samples == 0:
        raise UsageError("calibration data is empty: the reader yielded no samples")


def validate_reader(reader, model: ir.Model) -> int:
    """Check every batch of ``reader`` against ``model`` and return the number of samples."""
    return sum(len(next(iter(batch.values()))) for batch in checked_batches(reader, model))


def _check_dtype(value: ir.Value, array: np.ndarray) -> None:
    if value.dtype is None:
        return
    expected = value.dtype.numpy()
    if array.dtype != expected:
        raise UsageError(f"calibration input {value.name!r} is {array.dtype} but the model expects {expected}")


def _check_shape(value: ir.Value, array: np.ndarray, symbols: dict[str, int]) -> None:
    if value.shape is None:
        return
    dims = list(value.shape)
    fits = len(dims) == array.ndim and all(_dim_fits(d, n, symbols) for d, n in zip(dims, array.shape))
    if not fits:
        expected = "(" + ", ".join(_dim_label(d) for d in dims) + ")"
        raise UsageError(
            f"calibration input {value.name!r} has shape {tuple(array.shape)} but the model expects {expected}"
        )


def _dim_fits(dim: int | ir.SymbolicDim, size: int, symbols: dict[str, int]) -> bool:
    if isinstance(dim, int):
        return dim == size
    if dim.value is None:
        return True
    return symbols.setdefault(dim.value, size) == size


def _dim_label(dim: int | ir.SymbolicDim) -> str:
    if isinstance(dim, int):
        return str(dim)
    return dim.value or "?"
