"""Property test over onnx's node-test corpus: every case ORT runs still reproduces its expected
outputs after ``fold-constants, cleanup, fuse`` (issue 2; the verify engineer references it).

The 1,884 cases are generated in memory by ``onnx.backend.test.case.node.collect_testcases()``:
model, inputs and expected outputs. A case counts as *run* when ORT (optimizer disabled) loads the
original and matches its expected outputs; only those are judged after the passes.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx_ir as ir
import pytest
from onnx.backend.test.case.node import collect_testcases

from onnxcompress import runtime
from onnxcompress.errors import UsageError
from onnxcompress.passes import Cleanup, FoldConstants, Fuse


def _feeds(case, inputs) -> dict[str, object]:
    names = [v.name for v in case.model.graph.input]
    return dict(zip(names, inputs))


def _matches(case, got: dict[str, object], expected) -> bool:
    """The onnx runner's comparison: allclose with the case's rtol/atol, exact for non-numbers."""
    if len(got) != len(expected):
        return False
    for actual, wanted in zip(got.values(), expected):
        actual, wanted = np.asarray(actual), np.asarray(wanted)
        if actual.shape != wanted.shape:
            return False
        if not np.issubdtype(wanted.dtype, np.number) or wanted.dtype == np.bool_:
            if not np.array_equal(actual, wanted):
                return False
        elif not np.allclose(actual, wanted, rtol=case.rtol, atol=case.atol, equal_nan=True):
            return False
    return True


def _reproduces(case, model: ir.Model) -> bool:
    """Every data set of the case comes out as expected under ORT with its optimizer disabled."""
    for inputs, expected in case.data_sets:
        got = runtime.run(model, _feeds(case, inputs), threads=1, optimization="disable")
        if not _matches(case, got, expected):
            return False
    return True


def _optimized(case) -> ir.Model:
    model = ir.from_proto(case.model)
    for pass_ in (FoldConstants(), Cleanup(), Fuse()):
        model = pass_(model).model
    return model


@pytest.mark.slow
def test_every_case_ort_runs_survives_the_exact_pipeline():
    counts: collections.Counter[str] = collections.Counter()
    broken: list[str] = []
    for case in collect_testcases():
        if not case.data_sets:
            counts["no data"] += 1
            continue
        try:
            runs = _reproduces(case, ir.from_proto(case.model))
        except (UsageError, TypeError, ValueError, RuntimeError):
            runs = False
        if not runs:
            counts["ORT-unsupported"] += 1
            continue
        counts["run"] += 1
        try:
            kept = _reproduces(case, _optimized(case))
        except UsageError as exc:
            kept, case.name = False, f"{case.name} ({exc})"
        counts["kept"] += kept
        if not kept:
            broken.append(case.name)
    print(f"node corpus: kept {counts['kept']}/{counts['run']} run, {counts['ORT-unsupported']} ORT-unsupported, {counts['no data']} without data")
    assert counts["run"] > 1000
    assert broken == []
