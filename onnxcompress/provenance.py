"""Where a report came from: versions, CPU, threads, command, the input file's sha256 and the start time.

Two reports can only be compared when each says what produced it; this is that record, written at the top
of ``report.json``, as a header of ``report.md``, in ``compare --json`` and under the charts. Collecting it is
cheap: package metadata, the CPU facts of ``cpu``, and one streamed hash of the input file (no ORT session).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxcompress import cpu, io, spec
from onnxcompress.passes import CompressionPass

SCHEMA_VERSION = 2  # of report.json: 2 adds this record and each step's "exact"
PACKAGES = ("onnxcompress", "onnxruntime", "onnx", "onnx-ir", "numpy")
HASH_CHUNK = 1 << 20


@dataclasses.dataclass
class Provenance:
    """What produced a report: enough to tell whether two reports measured the same thing the same way."""

    started: str  # UTC, ISO 8601
    versions: dict[str, str | None]  # PACKAGES and "python"; None for a package not installed
    platform: str
    cpu: str
    cpu_int8: str  # cpu.CpuFeatures.int8_level: "vnni", "avx2", "arm-dot" or "none"
    threads: int
    command: str | None  # the command line; None for a run from Python
    recipe: list[str]  # the chain as pass specs (options only where not at their default), or compare's recipes
    input_path: str | None  # None for a model not loaded from a file
    input_sha256: str | None  # of the .onnx file alone
    input_external_data: list[str]  # files the model's tensors live in, not part of input_sha256
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, schema first."""
        fields = dataclasses.asdict(self)
        return {"schema": fields.pop("schema"), **fields}

    def header(self) -> list[str]:
        """A few lines saying what produced the report (report.md's header, the charts' footer)."""
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items() if version)
        lines = [
            f"command: {self.command or 'Pipeline.run from Python'}",
            f"input: {self.input_path or 'a model not loaded from a file'}"
            + (f" (sha256 {self.input_sha256})" if self.input_sha256 else ""),
            f"chain: {' -> '.join(self.recipe) or 'none'}",
            f"started {self.started} on {self.cpu} (int8: {self.cpu_int8}), {self.threads} ORT thread(s), {self.platform}",
            versions,
        ]
        if self.input_external_data:
            lines.insert(2, f"sha256 is of the .onnx file only; external data not hashed: {', '.join(self.input_external_data)}")
        return lines

    @classmethod
    def collect(cls, model: ir.Model, passes: Sequence[CompressionPass | str], *, threads: int, command: str | None = None) -> Provenance:
        """The provenance of a run of ``passes`` (pass objects, or recipes as text) on ``model`` starting now
        (``command``: the CLI line, if any)."""
        path = io.source_path(model)
        return cls(
            started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            versions={**{name: _version(name) for name in PACKAGES}, "python": platform.python_version()},
            platform=platform.platform(),
            cpu=cpu.cpu_model_name(),
            cpu_int8=cpu.cpu_features().int8_level,
            threads=threads,
            command=command,
            recipe=[p if isinstance(p, str) else spec_text(p) for p in passes],
            input_path=str(path) if path else None,
            input_sha256=file_sha256(path) if path else None,
            input_external_data=list(model.meta.get(io.EXTERNAL_FILES_KEY, ())),
        )


def spec_text(pass_: CompressionPass) -> str:
    """``pass_`` as a ``name:k=v,...`` spec ``spec.parse_pass`` reads back, with only the options not at their default."""
    defaults = pass_.option_specs()
    changed = {k: v for k, v in pass_.options().items() if v != defaults[k].default}
    return pass_.name + (":" + ",".join(f"{k}={spec.spell(v)}" for k, v in changed.items()) if changed else "")


def file_sha256(path: str | Path) -> str:
    """The sha256 of the file at ``path``, read in chunks (a large model is never held in memory at once);
    remembered while the file's size and modification time stay the same (``compare`` runs each recipe on it)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
