"""Where exported corpus models are kept between runs, keyed by what shaped them.

Exports take seconds to a minute each; the tests and ``tools/hardening_table.py`` reuse them. The
key holds the entry's name and revision and the versions of the packages that shape the graph
(torch, onnx, onnxscript and the entry's own), so upgrading any of them rebuilds instead of
silently testing a stale export. The folder is ``$ONNXCOMPRESS_HARDENING_CACHE`` or
``~/.cache/onnxcompress-hardening``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxcompress.models.hardening.entry import Entry

CACHE_ENV = "ONNXCOMPRESS_HARDENING_CACHE"
EXPORTER_PACKAGES = ("torch", "onnx", "onnxscript")


def folder(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder (created): ``cache``, else ``$ONNXCOMPRESS_HARDENING_CACHE``, else ``~/.cache/onnxcompress-hardening``."""
    path = Path(cache or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "onnxcompress-hardening")
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(entry: Entry) -> str:
    """A short hash of the entry's name, revision and the package versions its export depends on."""
    versions = {dist: importlib.metadata.version(dist) for dist in EXPORTER_PACKAGES}
    payload = {"name": entry.name, "revision": entry.revision, **versions, **entry.versions()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def cached(entry: Entry, cache: str | os.PathLike | None = None) -> Path:
    """The entry's exported model, built into the cache on first use (written atomically by the exporter)."""
    path = folder(cache) / f"{entry.name}-{key(entry)}.onnx"
    if not path.is_file():
        entry.make(path)
    return path
