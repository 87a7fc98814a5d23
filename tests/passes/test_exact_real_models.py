"""Real models keep their outputs through ``fold-constants, cleanup, fuse`` run by the Pipeline
(which checks structure and exactness after every step; benchmarking off)."""

from __future__ import annotations

import pytest

from onnxcompress import Measurement, Pipeline, io
from onnxcompress.passes import Cleanup, FoldConstants, Fuse, RemoveInitializerInputs


def _run_exact_pipeline(path, feeds=None, fuse=None, first=()):
    model = io.load(path)
    pipeline = Pipeline([*first, FoldConstants(), Cleanup(), fuse or Fuse()], measurement=Measurement(benchmark=False, feeds=feeds))
    return pipeline.run(model).report.steps


def _assert_kept_and_not_grown(steps) -> None:
    for step in steps[1:]:
        assert step.status == "kept", step.notes
        assert step.fidelity.exact, f"{step.pass_name}: max abs err {step.fidelity.max_abs_err:.3g}"
    assert steps[-1].nodes <= steps[0].nodes


@pytest.mark.slow
def test_light_models_keep_their_outputs(light_models):
    assert len(light_models) == 9
    for path in light_models:
        _assert_kept_and_not_grown(_run_exact_pipeline(path))


@pytest.mark.slow
def test_light_models_weights_made_constants_keep_their_outputs_and_fold_further(light_models):
    """The zoo's IR 3 models list every initializer as an input; as constants, the weights they build from shapes fold."""
    for path in light_models:
        plain, constants = _run_exact_pipeline(path), _run_exact_pipeline(path, first=[RemoveInitializerInputs()])
        _assert_kept_and_not_grown(constants)
        assert constants[1].details["inputs_removed"], path
        assert constants[-1].nodes < plain[-1].nodes, path


@pytest.mark.slow
def test_minilm_keeps_its_outputs_and_loses_its_shape_chains(minilm_onnx, minilm_feeds):
    steps = _run_exact_pipeline(minilm_onnx, minilm_feeds)
    _assert_kept_and_not_grown(steps)
    assert steps[-1].nodes < steps[0].nodes
    assert "Constant" not in steps[-1].op_histogram
    assert steps[-1].details["reshape-dims"] >= 6 * 3  # the q, k, v head reshapes of all six layers


@pytest.mark.slow
def test_minilm_at_opset_23_has_its_six_attention_blocks_fused(minilm_onnx, minilm_feeds):
    steps = _run_exact_pipeline(minilm_onnx, minilm_feeds, fuse=Fuse(opset=23))
    _assert_kept_and_not_grown(steps)
    histogram = steps[-1].op_histogram
    assert steps[-1].details["attention"] == 6 and histogram["Attention"] == 6
    assert "Softmax" not in histogram and "Transpose" not in histogram and "Constant" not in histogram
