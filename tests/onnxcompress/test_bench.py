"""Latency measurement: rounds alternate models, rounds with foreign CPU load are dropped and said so."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from onnxcompress import bench, runtime


class RecordingSession:
    """Stands in for an ORT session: records the order it is run in."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, output_names, feed):
        self.log.append(self.name)
        return [feed["x"]]


@pytest.fixture
def busy_core():
    """A foreign process spinning on one core for the duration of the test."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield proc
    proc.kill()
    proc.wait()


def test_models_alternate_round_by_round():
    log: list[str] = []
    sessions = [RecordingSession("a", log), RecordingSession("b", log)]
    feeds = [{"x": np.zeros(1)}] * 2
    results = bench.measure(sessions, feeds, batch=4, threads=1, rounds=3, warmup=0, round_seconds=0, max_foreign_cores=float("inf"))
    timed = log[2:]  # after one calibration run each, every round runs a's block then b's block
    blocks = [timed[i : i + 3] for i in range(0, len(timed), 3)]
    assert [b[0] for b in blocks] == ["a", "b"] * 3 and all(len(set(b)) == 1 for b in blocks)
    assert all(r.rounds_kept == 3 and r.rounds_dropped == 0 and r.batch == 4 and r.threads == 1 for r in results)


def test_rounds_with_a_busy_foreign_core_are_dropped_and_reported(mlp_model, busy_core):
    sess = runtime.session(mlp_model, threads=1)
    feeds = runtime.synthetic_inputs(mlp_model)
    (latency,) = bench.measure([sess], [feeds], batch=1, threads=1, rounds=2, round_seconds=0.2, max_extra_rounds=1)
    assert latency.rounds_dropped >= 1
    assert latency.rounds_kept + latency.rounds_dropped <= 3
    assert latency.to_dict()["clean"] == (latency.rounds_kept > 0)
    assert latency.median_ms > 0 and latency.runs > 0


def test_noisy_rounds_still_give_figures_but_not_clean(mlp_model):
    sess = runtime.session(mlp_model, threads=1)
    feeds = runtime.synthetic_inputs(mlp_model)
    (latency,) = bench.measure([sess], [feeds], batch=1, threads=1, rounds=2, round_seconds=0.01, max_foreign_cores=-1.0, max_extra_rounds=0)
    assert latency.rounds_kept == 0 and latency.rounds_dropped == 2 and not latency.clean
    assert latency.p10_ms <= latency.median_ms <= latency.p90_ms


def test_pinned_cores_give_the_timing_thread_the_first_core_and_each_pool_thread_one_of_the_next(monkeypatch):
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {6, 4, 5})
    assert bench.pinned_cores(3) == (4, "6;7")  # ORT numbers processors from 1
    assert bench.pinned_cores(2) == (4, "6")
    assert bench.pinned_cores(4) is None  # more threads than cores: left to the scheduler
    assert bench.pinned_cores(1) is None


def test_the_timing_thread_is_pinned_while_measuring_and_released_after():
    import os

    former = os.sched_getaffinity(0)
    seen: list[set[int]] = []

    class AffinityRecorder(RecordingSession):
        def run(self, output_names, feed):
            seen.append(os.sched_getaffinity(0))
            return super().run(output_names, feed)

    bench.measure([AffinityRecorder("a", [])], [{"x": np.zeros(1)}], batch=1, threads=2, rounds=1, warmup=0, round_seconds=0,
                  max_foreign_cores=float("inf"))
    pinned = bench.pinned_cores(2)
    assert seen and all(cores == ({pinned[0]} if pinned else former) for cores in seen)
    assert os.sched_getaffinity(0) == former


def test_sessions_for_timing_compute_what_plain_sessions_do(mlp_model):
    feeds = runtime.synthetic_inputs(mlp_model)
    (timed,) = bench.sessions([mlp_model], threads=2)
    expected = runtime.run(runtime.session(mlp_model, threads=2), feeds)
    assert all(np.array_equal(runtime.run(timed, feeds)[name], value) for name, value in expected.items())
    assert bench.measure([timed], [feeds], batch=1, threads=2, rounds=1, round_seconds=0.01)[0].median_ms > 0
