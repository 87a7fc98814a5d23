"""Importing this package registers every CLI command on the app (one module per command)."""

from onnxcompress.cli.commands import bench, inspect, passes, run
from onnxcompress.cli.commands import compare, recommend
from onnxcompress.cli.commands import verify

__all__ = ["bench", "compare", "inspect", "passes", "recommend", "run", "verify"]
