"""Importing this package registers every CLI command on the app (one module per command)."""

from onnxcompress.cli.commands import bench, inspect, passes, run

__all__ = ["bench", "inspect", "passes", "run"]
