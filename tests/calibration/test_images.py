"""ImageFolderReader: decoding, resize, layout, mean/std, and its errors."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from PIL import Image

from onnxcompress.calibration import ImageFolderReader
from onnxcompress.errors import UsageError

NHWC_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[N, 4, 6, 3] pixels) => (float[N, 4, 6, 3] out) { out = Relu(pixels) }
"""


@pytest.fixture
def folder(tmp_path):
    """Two RGB PNGs (8x12, constant colours) and one grey .npy (4x6)."""
    Image.new("RGB", (12, 8), (255, 0, 51)).save(tmp_path / "a.png")
    Image.new("RGB", (12, 8), (0, 255, 102)).save(tmp_path / "b.png")
    np.save(tmp_path / "c.npy", np.full((4, 6), 0.5, np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_images_are_resized_scaled_and_laid_out_nchw(folder):
    reader = ImageFolderReader(folder, input_name="x", size=(4, 6), batch_size=2)
    batches = [b["x"] for b in reader.batches()]
    assert [b.shape for b in batches] == [(2, 3, 4, 6), (1, 3, 4, 6)]
    assert batches[0].dtype == np.float32
    np.testing.assert_allclose(batches[0][0, :, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(batches[1], 0.5)


def test_mean_and_std_normalise_per_channel(folder):
    reader = ImageFolderReader(folder, input_name="x", size=(4, 6), mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 1.0])
    first = next(reader.batches())["x"][0]
    np.testing.assert_allclose(first[:, 0, 0], [1.0, -2.0, -0.3], atol=1e-6)


def test_for_model_reads_layout_size_and_name_from_an_nhwc_input(folder):
    reader = ImageFolderReader.for_model(folder, ir.from_onnx_text(NHWC_MODEL))
    (batch,) = list(reader.batches())
    assert reader.layout == "NHWC" and batch["pixels"].shape == (3, 4, 6, 3)


def test_resize_interpolates_bilinearly(tmp_path):
    np.save(tmp_path / "ramp.npy", np.tile(np.arange(4, dtype=np.float32), (2, 1)))
    reader = ImageFolderReader(tmp_path, input_name="x", size=(2, 8), channels=1)
    row = next(reader.batches())["x"][0, 0, 0]
    np.testing.assert_allclose(row, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])


def test_errors(tmp_path, folder):
    with pytest.raises(UsageError, match=r"a.png: no such folder$"):
        ImageFolderReader(tmp_path / "a.png", input_name="x", size=(2, 2))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=r"empty: no images \(.png, .jpg, .jpeg, .bmp, .npy\) found$"):
        ImageFolderReader(empty, input_name="x", size=(2, 2))
    with pytest.raises(UsageError, match=r"^image layout must be one of \('NCHW', 'NHWC'\), got 'CHW'$"):
        ImageFolderReader(folder, input_name="x", size=(2, 2), layout="CHW")
    with pytest.raises(UsageError, match=r"^image mean needs 1 or 3 values, got 2$"):
        ImageFolderReader(folder, input_name="x", size=(2, 2), mean=[0.1, 0.2])
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match=r"broken.png: not a readable image$"):
        list(ImageFolderReader(folder, input_name="x", size=(2, 2)).batches())


DYNAMIC_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[N, A, B, C] pixels) => (float[N, A, B, C] out) { out = Relu(pixels) }
"""


def test_for_model_takes_layout_and_size_where_the_input_leaves_them_dynamic(folder):
    model = ir.from_onnx_text(DYNAMIC_MODEL)
    reader = ImageFolderReader.for_model(folder, model, layout="nhwc", size=(4, 6), mean=[0.5], std=[0.5])
    (batch,) = list(reader.batches())
    assert reader.layout == "NHWC" and batch["pixels"].shape == (3, 4, 6, 3)
    np.testing.assert_allclose(batch["pixels"][0, 0, 0], [1.0, -1.0, -0.6], atol=1e-6)
    assert reader.describe() == f"3 images from {folder}, resized to 4x6, scaled to [0, 1], minus mean 0.5,0.5,0.5, divided by std 0.5,0.5,0.5, NHWC"
    with pytest.raises(UsageError, match=r"^input 'pixels' of shape \(N, A, B, C\) has no axis of 1 or 3 channels; give the layout"):
        ImageFolderReader.for_model(folder, model)
    with pytest.raises(UsageError, match=r"^input 'pixels' of shape \(N, A, B, C\) has a dynamic height or width; give the image size"):
        ImageFolderReader.for_model(folder, model, layout="NCHW")


def test_for_model_says_when_no_mean_or_std_is_applied_and_refuses_a_layout_without_image_channels(folder):
    reader = ImageFolderReader.for_model(folder, ir.from_onnx_text(NHWC_MODEL))
    assert reader.describe().endswith("resized to 4x6, scaled to [0, 1] without mean/std normalisation, NHWC")
    with pytest.raises(UsageError, match=r"^input 'pixels' of shape \(N, 4, 6, 3\) has 4 channels in layout NCHW; images give 1 or 3$"):
        ImageFolderReader.for_model(folder, ir.from_onnx_text(NHWC_MODEL), layout="nchw")


CONV_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[batch_size, num_channels, height, width] pixel_values) => (float[batch_size, 2, H, W] out)
    <float[2, 3, 2, 2] w = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0}> {
  out = Conv <strides = [2, 2]> (pixel_values, w)
}
"""


def test_an_input_all_dynamic_takes_the_channels_its_conv_reads_and_an_image_side(folder):
    # Optimum declares [batch_size, num_channels, height, width]: the folder was refused ("no axis of 1 or 3 channels")
    reader = ImageFolderReader.for_model(folder, ir.from_onnx_text(CONV_MODEL))
    (batch,) = list(reader.batches())
    assert reader.layout == "NCHW" and batch["pixel_values"].shape == (3, 3, 224, 224)
    assert "resized to 224x224 (the model's height and width are dynamic: --image-size H,W to choose)" in reader.describe()
    assert "to choose" not in ImageFolderReader.for_model(folder, ir.from_onnx_text(CONV_MODEL), size=(8, 12)).describe()
