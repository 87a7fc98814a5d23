"""Small float graphs for the quantization tests, written as ONNX text with seeded weights."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import io
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes.quantization.support.target import Int8Kernel, cpu_kernel, resolve_target

CNN_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
cnn (float[N, 3, 8, 8] x) => (float[N, 4] y)
<float[8, 3, 3, 3] w1 = {0.0}, float[8] b1 = {0.0}, float[8, 8, 3, 3] w2 = {0.0}, float[8] b2 = {0.0}, float[8, 4] wf = {0.0}>
{
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r1 = Relu (c1)
    c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2)
    a = Add (c2, r1)
    p = GlobalAveragePool (a)
    f = Flatten (p)
    y = MatMul (f, wf)
}
"""

MLP_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N, 16] x) => (float[N, 8] y)
<float[16, 16] wa = {0.0}, float[16, 8] wb = {0.0}>
{
    h = MatMul (x, wa)
    y = MatMul (h, wb)
}
"""


# Tokens of very different size go through a MatMul (symmetric input), a Relu and a second MatMul (one-sided input)
# with a bias.
TOKENS_TEXT = """
<ir_version: 8, opset_import: ["" : %d]>
tokens (float[N, 6, 32] x) => (float[N, 6, 8] y)
<float[32, 32] wa = {0.0}, float[32, 8] wb = {0.0}, float[8] bb = {0.0}>
{
    h = MatMul (x, wa)
    r = Relu (h)
    p = MatMul (r, wb)
    y = Add (bb, p)
}
"""


@pytest.fixture(params=[None, False, True], ids=["cpu-default", "8-bit-weights", "7-bit-weights"])
def reduce_range(request) -> bool | None:
    """A quantize pass's ``reduce_range``: this CPU's default, and each x86 weight grid pinned whatever the CPU."""
    return request.param


def kernel_for(reduce_range: bool | None) -> Int8Kernel:
    """The integer MatMul ORT runs on this CPU for a quantize pass given ``reduce_range`` (U8 activations, S8 weights)."""
    return cpu_kernel(resolve_target("uint8", "int8", reduce_range))


def with_weights(text: str, seed: int = 0, scale: float = 0.3) -> ir.Model:
    """Parse ``text`` and refill every initializer (declared as ``= {0.0}``) with seeded normal values; name every node."""
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    for tensor in proto.graph.initializer:
        shape = tuple(tensor.dims)
        tensor.CopyFrom(onnx.numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), tensor.name))
    for index, node in enumerate(proto.graph.node):
        node.name = node.name or f"{node.op_type.lower()}_{index}"
    return ir.serde.deserialize_model(proto)


def calibrated_part(reader, model: ir.Model) -> dict[str, np.ndarray]:
    """The samples of ``reader`` a quantizer calibrates on: all but those it holds out to judge its result."""
    from onnxcompress.calibration import holdout

    batches = list(holdout.CalibrationPart(reader, model).batches())
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


@pytest.fixture
def cnn() -> ir.Model:
    """Conv → Relu → Conv → residual Add → GlobalAveragePool → Flatten → MatMul."""
    return with_weights(CNN_TEXT)


@pytest.fixture
def mlp() -> ir.Model:
    """Two MatMuls in a row (nodes named matmul_0, matmul_1)."""
    return with_weights(MLP_TEXT)


@pytest.fixture
def cnn_inputs() -> dict[str, np.ndarray]:
    """Sixteen seeded inputs for ``cnn``."""
    return {"x": np.random.default_rng(1).normal(size=(16, 3, 8, 8)).astype(np.float32)}


@pytest.fixture
def cnn_reader(cnn_inputs) -> ArrayReader:
    """Calibration reader over ``cnn_inputs`` in two batches."""
    return ArrayReader(cnn_inputs, batch_size=8)


def tokens_model(opset: int = 17) -> ir.Model:
    """``TOKENS_TEXT`` at ``opset`` with seeded weights (nodes matmul_0, relu_1, matmul_2, add_3)."""
    return with_weights(TOKENS_TEXT % opset)


def token_inputs(seed: int, count: int = 16) -> dict[str, np.ndarray]:
    """Inputs for ``tokens_model`` whose rows span two decades in size, as token activations do."""
    rng = np.random.default_rng(seed)
    sizes = 10.0 ** rng.uniform(-1, 1, size=(count, 6, 1))
    return {"x": (rng.normal(size=(count, 6, 32)) * sizes).astype(np.float32)}


def minilm_calibration() -> ArrayReader:
    """64 corpus sentences (seed 1, length 32) for the MiniLM tests of calibrated rewrites."""
    from onnxcompress.models import corpus, minilm

    return ArrayReader(minilm.tokenize(corpus.sentences(64, seed=1), max_length=32, pad_to=32), batch_size=32)


def assert_exact_and_better_for_int8(reference: ir.Model, rewritten: ir.Model, feeds: dict[str, np.ndarray]) -> None:
    """``rewritten`` reproduces ``reference`` (ORT optimizer off and on), and after ``quantize-dynamic`` its
    sentence embedding is closer to FP32 than ``reference``'s."""
    from onnxcompress import fidelity, runtime
    from onnxcompress.passes import QuantizeDynamic

    expected = runtime.run(reference, feeds, optimization="disable")
    for level in ("disable", "all"):
        assert fidelity.compare(expected, runtime.run(rewritten, feeds, optimization=level)).exact
    plain, rewritten = io.clone(reference), io.clone(rewritten)
    for model in (plain, rewritten):
        QuantizeDynamic()(model)

    def cosine(model: ir.Model) -> float:
        got = runtime.run(model, feeds)["sentence_embedding"]
        return fidelity.compare({"e": expected["sentence_embedding"]}, {"e": got}).cosine

    assert cosine(rewritten) > cosine(plain)


@pytest.fixture(scope="package")
def mobilenet(tmp_path_factory) -> ir.Model:
    """The MobileNetV3-style net at 32×32 with BatchNorm statistics re-estimated on random images,
    so its logits depend on the input (with the initial statistics every image gets the same logits)."""
    import torch

    from onnxcompress.models import vision
    from onnxcompress.models.export import export_onnx

    module = vision.with_batch_statistics(vision.mobilenetv3_style(), (3, 32, 32))
    path = tmp_path_factory.mktemp("mobilenet") / "mobilenet.onnx"
    return io.load(export_onnx(module, path, (torch.zeros(1, 3, 32, 32),), input_names=["x"], output_names=["logits"]))
