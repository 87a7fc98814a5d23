"""Property test over onnx's node-test corpus: every case ORT runs goes through ``fold-constants,
cleanup, fuse`` as ``onnxcompress run`` takes it (the pipeline refuses an invalid graph and an exact
pass that changes an output) and still reproduces its expected outputs (issue 2; the verify
engineer references it).

The 1,884 cases are generated in memory by ``onnx.backend.test.case.node.collect_testcases()``:
model, inputs and expected outputs. A case counts as *run* when ORT (optimizer disabled) loads the
original and matches its expected outputs; only those are judged after the passes. Generating them
takes most of a minute, so two cases that once failed are rebuilt here as fast tests.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx.backend.test.case.node import collect_testcases

from onnxcompress import runtime
from onnxcompress.errors import CheckFailed, UsageError
from onnxcompress.passes import Cleanup, FoldConstants, Fuse, Upcast
from onnxcompress.pipeline import Measurement, Pipeline


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


def _optimized(model: onnx.ModelProto, feeds: dict[str, object], passes: list | None = None) -> ir.Model:
    """``model`` after ``passes`` (the exact ones by default), checked by the pipeline on ``feeds`` (``CheckFailed``
    if one broke it)."""
    measurement = Measurement(benchmark=False, threads=1, feeds=feeds)
    passes = passes if passes is not None else [FoldConstants(), Cleanup(), Fuse()]
    return Pipeline(passes, measurement=measurement).run(ir.from_proto(model)).model


@pytest.fixture(scope="module")
def runnable_cases() -> tuple[list, collections.Counter]:
    """The cases ORT (optimizer disabled) reproduces, and how many were left out and why: generated once."""
    counts: collections.Counter[str] = collections.Counter()
    runnable = []
    for case in collect_testcases():
        if not case.data_sets:
            counts["no data"] += 1
            continue
        try:
            runs = _reproduces(case, ir.from_proto(case.model))
        except (UsageError, TypeError, ValueError, RuntimeError):
            runs = False
        counts["run" if runs else "ORT-unsupported"] += 1
        if runs:
            runnable.append(case)
    return runnable, counts


def _survives(case, passes: list | None = None) -> bool:
    """The case's data sets come out as expected after ``passes`` (the exact ones by default), run as the pipeline
    runs them on the first data set's inputs (an invalid graph or an exact pass that changes an output: broken)."""
    try:
        return _reproduces(case, _optimized(case.model, _feeds(case, case.data_sets[0][0]), passes))
    except (UsageError, CheckFailed) as exc:
        case.name = f"{case.name} ({exc})"
        return False


@pytest.mark.slow
def test_every_case_ort_runs_survives_the_exact_pipeline(runnable_cases):
    cases, counts = runnable_cases
    broken = [case.name for case in cases if not _survives(case)]
    print(f"node corpus: kept {len(cases) - len(broken)}/{counts['run']} run, {counts['ORT-unsupported']} ORT-unsupported, "
          f"{counts['no data']} without data")
    assert counts["run"] > 1000
    assert broken == []


@pytest.mark.slow
def test_every_half_precision_case_ort_runs_survives_upcast(runnable_cases):
    """Cases with float16 or bfloat16 tensors (values, weights, cast targets) compute in float32 after ``upcast``,
    their interface kept, and still give the expected outputs."""
    half = [case for case in runnable_cases[0] if _has_half_precision(case.model)]
    broken = [case.name for case in half if not _survives(case, [Upcast()])]
    assert len(half) > 30
    assert broken == []


def _has_half_precision(model: onnx.ModelProto) -> bool:
    """Whether some tensor type or tensor of ``model`` is float16 or bfloat16 (read from its text form)."""
    text = str(model)
    return any(f"{field}: {kind}" in text for field in ("elem_type", "data_type") for kind in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16))


def test_mvn_whose_function_body_onnx_cannot_infer_passes_the_structure_check():
    # onnx's strict inference of MeanVarianceNormalization without its default axes fails on the input already
    x = onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [3, 3, 3, 1])
    y = onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [3, 3, 3, 1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("MeanVarianceNormalization", ["X"], ["Y"])], "test_mvn", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    feeds = {"X": np.random.default_rng(0).normal(size=(3, 3, 3, 1)).astype(np.float32)}
    expected = runtime.run(ir.from_proto(model), feeds)
    assert np.array_equal(runtime.run(_optimized(model, feeds), feeds)["Y"], expected["Y"])


@pytest.mark.parametrize("cond", [True, False])
def test_if_whose_branch_returns_an_empty_optional_is_kept(cond):
    sequence = onnx.helper.make_sequence_type_proto(onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [5]))
    optional = onnx.helper.make_optional_type_proto(sequence)
    empty = onnx.helper.make_graph([onnx.helper.make_node("Optional", [], ["empty"], type=sequence)], "then", [],
                                   [onnx.helper.make_value_info("empty", optional)])
    full = onnx.helper.make_graph([
        onnx.helper.make_node("Constant", [], ["x"], value=onnx.numpy_helper.from_array(np.arange(1, 6, dtype=np.float32))),
        onnx.helper.make_node("SequenceConstruct", ["x"], ["items"]),
        onnx.helper.make_node("Optional", ["items"], ["full"]),
    ], "else", [], [onnx.helper.make_value_info("full", optional)])
    branch = onnx.helper.make_node("If", ["cond"], ["sequence"], then_branch=empty, else_branch=full)
    graph = onnx.helper.make_graph([branch], "test_if_opt", [onnx.helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])],
                                   [onnx.helper.make_value_info("sequence", optional)])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 16)], ir_version=8)
    feeds = {"cond": np.array(cond)}
    got = runtime.run(_optimized(model, feeds), feeds)["sequence"]
    assert got is None if cond else np.array_equal(got[0], np.arange(1, 6, dtype=np.float32))
