"""Importing this package registers every CLI command on the app (one module per command)."""

from onnxcompress.cli.commands import bench, inspect, passes, run
from onnxcompress.cli.commands import compare, recommend, search
from onnxcompress.cli.commands import verify
from onnxcompress.cli.commands import demo, distill_minilm

__all__ = ["bench", "compare", "demo", "distill_minilm", "inspect", "passes", "recommend", "run", "search", "verify"]
