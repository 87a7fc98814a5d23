"""The demo's stage table: teacher, students and the compressed model measured side by side.

Each stage becomes a ``report.StepRecord`` (so ``Report``'s Markdown and ``plot.plot_report`` serve
it unchanged): latency at batch 1 with the speedup vs the teacher, fidelity vs the teacher's
logits, test accuracy; the batch-64 latency and speedup go in ``details``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxcompress import bench, fidelity, runtime, stats
from onnxcompress.pipeline import LabelledData
from onnxcompress.report import Report, StepRecord

LARGE_BATCH = 64


@dataclasses.dataclass
class Stage:
    """A named model to measure."""

    name: str
    model: ir.Model


def measure_stages(stages: list[Stage], test: LabelledData, *, threads: int, rounds: int) -> Report:
    """One record per stage; the first stage (the teacher) is the reference for speedups and fidelity."""
    teacher_logits = runtime.run(stages[0].model, test.feeds, threads=threads)
    small = _latencies(stages, test.feeds, 1, threads, rounds)
    large = _latencies(stages, test.feeds, LARGE_BATCH, threads, rounds)
    records = []
    for stage, b1, b64 in zip(stages, small, large):
        st = stats.model_stats(stage.model)
        logits = runtime.run(stage.model, test.feeds, threads=threads)
        records.append(
            StepRecord(
                pass_name=stage.name,
                options={},
                status="input" if not records else "kept",
                size_bytes=st.size_bytes,
                params=st.params,
                nodes=st.nodes,
                op_histogram=st.op_histogram,
                latency=b1,
                speedup=small[0].median_ms / b1.median_ms,
                fidelity=fidelity.compare(teacher_logits, dict(zip(teacher_logits, logits.values()))),
                accuracy=test.accuracy(stage.model, threads),
                details={"latency_b64_ms": b64.to_dict(), "speedup_b64": large[0].median_ms / b64.median_ms},
            )
        )
    return Report(records)


def stage_rows(report: Report) -> list[dict[str, str]]:
    """``Report.rows()`` with the batch-64 latency and speedup added after the batch-1 ones."""
    rows = []
    for row, step in zip(report.rows(), report.steps):
        b64 = step.details["latency_b64_ms"]["median_ms"]
        extra = {"latency b64 ms": f"{b64:.3f}", "speedup b64": f"{step.details['speedup_b64']:.2f}x"}
        keys = list(row)
        at = keys.index("speedup") + 1
        rows.append({k: row[k] for k in keys[:at]} | extra | {k: row[k] for k in keys[at:] if k != "seconds"})
    return rows


def _latencies(stages: list[Stage], feeds: dict[str, np.ndarray], batch: int, threads: int, rounds: int) -> list[bench.Latency]:
    batch_feeds = {k: _rows(v, batch) for k, v in feeds.items()}
    sessions = bench.sessions([s.model for s in stages], threads=threads)
    return bench.measure(sessions, [batch_feeds] * len(sessions), batch=batch, threads=threads, rounds=rounds)


def _rows(array: np.ndarray, count: int) -> np.ndarray:
    return np.resize(array, (count, *array.shape[1:])).astype(array.dtype)
