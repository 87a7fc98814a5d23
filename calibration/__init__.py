"""Calibration data and activation ranges: readers, activation streaming and range estimators.

Readers stream model inputs in batches (``.npz``, arrays, feed dicts, image folders, text with a local
tokenizer, synthetic), and ``as_reader`` makes one of any form the data comes in (a path, a dict of
arrays, an iterable of feed dicts, an ONNX Runtime ``CalibrationDataReader``); ``stream_activations``
runs the model exposing intermediate tensors one batch at a time; the estimators (min-max, percentile,
entropy/KL, MSE) keep memory independent of the sample count; ranges can be saved to a JSON file so
calibration runs once.
"""

from onnxcompress.calibration.activations import expose_tensors, float_tensor_names, stream_activations
from onnxcompress.calibration.estimators import ESTIMATORS, MSE, Entropy, MinMax, Percentile, make_estimator
from onnxcompress.calibration.histogram import StreamingHistogram
from onnxcompress.calibration.images import ImageFolderReader
from onnxcompress.calibration.ranges import Ranges, estimate_ranges, load_ranges, model_hash, save_ranges
from onnxcompress.calibration.readers import ArrayReader, FeedsReader, NpzReader, Reader, SyntheticReader, as_reader, open_reader
from onnxcompress.calibration.text import TextReader
from onnxcompress.calibration.validation import validate_reader

__all__ = [
    "ESTIMATORS",
    "MSE",
    "ArrayReader",
    "Entropy",
    "FeedsReader",
    "ImageFolderReader",
    "MinMax",
    "NpzReader",
    "Percentile",
    "Ranges",
    "Reader",
    "StreamingHistogram",
    "SyntheticReader",
    "TextReader",
    "as_reader",
    "estimate_ranges",
    "expose_tensors",
    "float_tensor_names",
    "load_ranges",
    "make_estimator",
    "model_hash",
    "open_reader",
    "save_ranges",
    "stream_activations",
    "validate_reader",
]
