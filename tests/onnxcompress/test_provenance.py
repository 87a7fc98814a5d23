"""Provenance: every field a report needs to be compared with another, filled from the machine and the input file."""

from __future__ import annotations

import datetime
import hashlib
import platform
from importlib import metadata

import onnx

from onnxcompress import cpu, io
from onnxcompress.pipeline import Measurement, Pipeline
from onnxcompress.provenance import PACKAGES, SCHEMA_VERSION, Provenance, file_sha256
from onnxcompress.spec import parse_pass


def test_pipeline_report_records_where_it_came_from(mlp_path):
    passes = [parse_pass("test-noop"), parse_pass("test-scale:factor=0.25"), parse_pass("test-scale")]
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    report = Pipeline(passes, measurement=Measurement(benchmark=False, threads=1)).run(io.load(mlp_path)).report
    p = report.provenance
    assert p.schema == SCHEMA_VERSION and p.command is None and p.threads == 1
    assert p.input_path == str(mlp_path.resolve()) and p.input_external_data == []
    assert p.input_sha256 == hashlib.sha256(mlp_path.read_bytes()).hexdigest()
    assert p.versions == {**{name: metadata.version(name) for name in PACKAGES}, "python": platform.python_version()}
    assert p.cpu == cpu.cpu_model_name() and p.cpu_int8 == cpu.cpu_features().int8_level
    assert p.recipe == ["test-noop", "test-scale:factor=0.25", "test-scale"]
    started = datetime.datetime.fromisoformat(p.started)
    assert started.utcoffset() == datetime.timedelta(0) and before <= started <= datetime.datetime.now(datetime.timezone.utc)


def test_a_model_not_loaded_from_a_file_has_no_path_or_hash(mlp_model):
    p = Provenance.collect(mlp_model, ["fuse;quantize-dynamic"], threads=2, command="onnxcompress compare m.onnx")
    assert (p.input_path, p.input_sha256, p.recipe, p.command) == (None, None, ["fuse;quantize-dynamic"], "onnxcompress compare m.onnx")
    assert "input: a model not loaded from a file" in p.header()


def test_external_data_is_named_and_only_the_onnx_file_hashed(tmp_path, mlp_model):
    onnx.save(io.to_proto(mlp_model), tmp_path / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    p = Provenance.collect(io.load(tmp_path / "m.onnx"), [], threads=1)
    assert p.input_sha256 == hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()
    assert [path.endswith("w.bin") for path in p.input_external_data] == [True]
    assert any(line.startswith("sha256 is of the .onnx file only; external data not hashed:") for line in p.header())


def test_hash_is_streamed_in_chunks_and_follows_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setattr("onnxcompress.provenance.HASH_CHUNK", 7)
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 3)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"other, longer contents" * 5)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_form_puts_the_schema_first(mlp_model):
    data = Provenance.collect(mlp_model, [], threads=3).to_dict()
    assert list(data)[:2] == ["schema", "started"] and data["threads"] == 3 and data["command"] is None
