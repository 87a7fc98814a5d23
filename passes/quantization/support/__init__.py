"""The pieces the quantization passes are built from: CPU target, ranges, rounding, fallback, ORT bridge, graph rewrites."""
