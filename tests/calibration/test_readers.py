"""Readers: arrays, feed dicts, streamed .npz files and synthetic batches; ``open_reader`` and ``as_reader`` pick and check one."""

from __future__ import annotations

import tracemalloc

import numpy as np
import onnx_ir as ir
import pytest

from onnxruntime.quantization import CalibrationDataReader

from onnxcompress.calibration import (
    ArrayReader,
    FeedsReader,
    ImageFolderReader,
    NpzReader,
    Reader,
    SyntheticReader,
    as_reader,
    open_reader,
)
from onnxcompress.errors import UsageError

IMAGE_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[N, 1, 8, 8] image) => (float[N, 1, 8, 8] out) { out = Relu(image) }
"""


def _concatenated(reader) -> dict[str, np.ndarray]:
    batches = list(reader.batches())
    return {name: np.concatenate([b[name] for b in batches]) for name in reader.input_names}


def test_array_reader_slices_batches_and_can_be_iterated_again():
    data = {"a": np.arange(10, dtype=np.float32)[:, None], "b": np.arange(10)}
    reader = ArrayReader(data, batch_size=4)
    assert [len(b["a"]) for b in reader.batches()] == [4, 4, 2]
    assert isinstance(reader, Reader)
    for _ in range(2):
        np.testing.assert_array_equal(_concatenated(reader)["b"], data["b"])


def test_array_reader_refuses_different_sample_counts():
    with pytest.raises(UsageError, match=r"^calibration inputs have different sample counts: \{'a': 3, 'b': 2\}$"):
        ArrayReader({"a": np.zeros(3), "b": np.zeros(2)})


def test_npz_reader_streams_the_same_arrays_as_numpy(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((37, 3, 4)).astype(np.float32), "ids": rng.integers(0, 9, (37, 5))}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        reader = NpzReader(path, batch_size=8)
        assert reader.input_names == ["x", "ids"]
        assert [len(b["x"]) for b in reader.batches()] == [8, 8, 8, 8, 5]
        for name, array in _concatenated(reader).items():
            np.testing.assert_array_equal(array, arrays[name])
            assert array.dtype == arrays[name].dtype


def test_npz_reader_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file$"):
        NpzReader(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UsageError, match=r"junk.npz: not a readable .npz file \(BadZipFile\)$"):
        NpzReader(tmp_path / "junk.npz")


def test_synthetic_reader_follows_the_signature_and_repeats(small_model):
    reader = SyntheticReader(small_model, samples=10, batch_size=4, seed=1)
    shapes = [b["x"].shape for b in reader.batches()]
    assert shapes == [(4, 4), (4, 4), (2, 4)]
    np.testing.assert_array_equal(_concatenated(reader)["x"], _concatenated(reader)["x"])


def test_open_reader_reads_npz_and_checks_it(tmp_path, small_model):
    np.savez(tmp_path / "good.npz", x=np.ones((3, 4), np.float32))
    assert isinstance(open_reader(tmp_path / "good.npz", small_model), NpzReader)
    np.savez(tmp_path / "bad.npz", x=np.ones((3, 5), np.float32))
    with pytest.raises(UsageError, match=r"^calibration input 'x' has shape \(3, 5\) but the model expects \(N, 4\)$"):
        open_reader(tmp_path / "bad.npz", small_model)


def test_open_reader_reads_an_image_folder(tmp_path):
    model = ir.from_onnx_text(IMAGE_MODEL)
    for index in range(3):
        np.save(tmp_path / f"{index}.npy", np.full((16, 16), index / 4, np.float32))
    reader = open_reader(tmp_path, model)
    assert isinstance(reader, ImageFolderReader)
    assert _concatenated(reader)["image"].shape == (3, 1, 8, 8)


def test_open_reader_refuses_other_sources(tmp_path, small_model):
    with pytest.raises(UsageError, match=r"nothing.npz: no such file or folder$"):
        open_reader(tmp_path / "nothing.npz", small_model)
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(UsageError, match=r"data.csv: expected an .npz file, a folder of images or a .txt file with a tokenizer$"):
        open_reader(tmp_path / "data.csv", small_model)


def _npz_peak_bytes(folder, samples: int) -> int:
    path = folder / f"{samples}.npz"
    np.savez_compressed(path, x=np.zeros((samples, 64, 64), np.float32))
    tracemalloc.start()
    for _ in NpzReader(path, batch_size=16).batches():
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_npz_reader_memory_does_not_grow_with_the_file(tmp_path):
    assert _npz_peak_bytes(tmp_path, 2000) < 1.5 * _npz_peak_bytes(tmp_path, 200)


@pytest.mark.parametrize("batch", ["N", "1"])
def test_npz_reader_yields_what_has_no_sample_axis_whole_with_every_batch(tmp_path, stateful_model, stateful_feeds, batch):
    feeds = stateful_feeds(samples=7)
    np.savez(tmp_path / "data.npz", **feeds)
    reader = NpzReader(tmp_path / "data.npz", batch_size=3, model=stateful_model(batch))
    batches = list(reader.batches())
    assert [len(b["x"]) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), feeds["x"])
    for b in batches:
        for name in ("gain", "state", "step", "bias"):
            np.testing.assert_array_equal(b[name], feeds[name])
            assert b[name].dtype == feeds[name].dtype


def test_readers_without_a_model_hold_scalars_and_slice_the_rest(tmp_path):
    arrays = {"x": np.arange(5, dtype=np.float32)[:, None], "rate": np.array(16000, np.int64)}
    np.savez(tmp_path / "data.npz", **arrays)
    for reader in (ArrayReader(arrays, batch_size=2), NpzReader(tmp_path / "data.npz", batch_size=2)):
        batches = list(reader.batches())
        assert [b["x"].shape for b in batches] == [(2, 1), (2, 1), (1, 1)]
        assert [int(b["rate"]) for b in batches] == [16000] * 3


def test_open_reader_reads_a_fixed_batch_and_held_inputs(tmp_path, stateful_model, stateful_feeds):
    np.savez(tmp_path / "data.npz", **stateful_feeds())
    reader = open_reader(tmp_path / "data.npz", stateful_model("1"))
    assert reader.layout.held() == {"gain", "state", "step", "bias"}


class OrtStyleReader(CalibrationDataReader):
    """An ONNX Runtime calibration reader as ORT users write one: ``get_next()`` until None, ``rewind()``."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.rewind()

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self) -> None:
        self._feeds = iter(self.feeds)


def _small_feeds(samples: int = 10) -> dict[str, np.ndarray]:
    return {"x": np.arange(samples * 4, dtype=np.float32).reshape(samples, 4)}


def test_as_reader_slices_a_dict_of_arrays_by_samples(small_model):
    reader = as_reader(_small_feeds(), small_model, batch_size=4)
    assert isinstance(reader, ArrayReader) and [len(b["x"]) for b in reader.batches()] == [4, 4, 2]
    np.testing.assert_array_equal(_concatenated(reader)["x"], _small_feeds()["x"])


def test_as_reader_reads_an_ort_reader_once_rewinding_it_before_and_after(small_model):
    feeds = [{"x": part} for part in np.split(_small_feeds()["x"], [3, 7])]
    ort_reader = OrtStyleReader(feeds)
    ort_reader.get_next()  # already partly read, as after an ORT quantize_static call
    reader = as_reader(ort_reader, small_model)
    assert isinstance(reader, FeedsReader)
    for _ in range(2):  # a reader the passes can read again, with every feed
        assert [len(b["x"]) for b in reader.batches()] == [3, 4, 3]
    np.testing.assert_array_equal(ort_reader.get_next()["x"], feeds[0]["x"])


def test_as_reader_holds_a_one_shot_iterable_of_feeds(small_model):
    reader = as_reader(({"x": row[None]} for row in _small_feeds(3)["x"]), small_model)
    assert [len(b["x"]) for b in reader.batches()] == [1, 1, 1] == [len(b["x"]) for b in reader.batches()]


def test_as_reader_opens_a_path_and_keeps_a_reader(tmp_path, small_model):
    np.savez(tmp_path / "data.npz", **_small_feeds())
    assert isinstance(as_reader(str(tmp_path / "data.npz"), small_model), NpzReader)
    given = ArrayReader(_small_feeds())
    assert as_reader(given, small_model) is given


@pytest.mark.parametrize(("data", "message"), [
    (42, r"^calibration data must be a path \(.npz file, image folder\), a dict of arrays by input name, an iterable of feed "
         r"dicts, an ONNX Runtime CalibrationDataReader or a reader \(input_names, batches\(\)\); got int$"),
    (np.zeros((3, 4), np.float32), r"^calibration data must be .*; got ndarray$"),
    ({"image": np.zeros((3, 4), np.float32)}, r"^calibration data lacks model input\(s\) \['x'\]; it has \['image'\]$"),
    (ArrayReader({"image": np.zeros((3, 4), np.float32)}), r"^calibration data lacks model input\(s\) \['x'\]"),
    ([{"x": np.zeros((2, 4), np.float32)}, {"y": np.zeros((2, 4), np.float32)}], r"^calibration feed 1 has inputs \['y'\] but feed 0 has \['x'\]$"),
    ([np.zeros((2, 4), np.float32)], r"^calibration feed 0 is a ndarray, not a dict of arrays keyed by input name$"),
    ([], r"^calibration data is empty: it gave no feed dicts$"),
    ({"x": np.zeros((3, 5), np.float32)}, r"^calibration input 'x' has shape \(3, 5\) but the model expects \(N, 4\)$"),
])
def test_as_reader_refuses_other_data_in_one_line(small_model, data, message):
    with pytest.raises(UsageError, match=message):
        as_reader(data, small_model)


TEXT_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
text (int64[N, 16] input_ids, int64[N, 16] attention_mask) => (int64[N, 16] y) { y = Add(input_ids, attention_mask) }
"""


def test_open_reader_tokenizes_a_text_file_for_the_models_inputs(tmp_path):
    from onnxcompress.models import minilm

    (tmp_path / "sentences.txt").write_text("The cat sat.\nA longer sentence than the first one.\n")
    reader = open_reader(tmp_path / "sentences.txt", ir.from_onnx_text(TEXT_MODEL), tokenizer=minilm.model_path())
    (batch,) = list(reader.batches())
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape == (2, 16)  # padded to the model's length
    assert "padded to 16 tokens" in reader.describe()


@pytest.mark.parametrize(("source", "options", "message"), [
    ("data.npz", {"tokenizer": "tok"}, r"^a tokenizer reads a text file of sentences, and calibration data .*data.npz is an .npz$"),
    ("images", {"tokenizer": "tok"}, r"^a tokenizer reads a text file of sentences, and calibration data .*images is a folder$"),
    ("data.npz", {"mean": (0.5,), "layout": "NCHW"}, r"^image options \(mean, layout\) apply to a folder of images, and calibration data .*data.npz is a file$"),
    ("sentences.txt", {}, r"sentences.txt: a text file needs the folder of its tokenizer.json \(--tokenizer DIR\)$"),
])
def test_open_reader_refuses_options_that_do_not_fit_the_data(tmp_path, small_model, source, options, message):
    np.savez(tmp_path / "data.npz", **_small_feeds())
    (tmp_path / "images").mkdir()
    (tmp_path / "sentences.txt").write_text("one sentence\n")
    with pytest.raises(UsageError, match=message):
        open_reader(tmp_path / source, small_model, **options)
