"""ORT CPU latency, measured side by side in alternating rounds on a shared, noisy machine.

ORT's intra-op threads spin-wait, so one busy foreign core makes a model several times slower.
Every round therefore records how much CPU other processes used (``/proc/stat`` minus our own
process's time); rounds where they used more than ``max_foreign_cores`` are dropped, and the
models are alternated round by round so drift hits them equally. Figures are meant as ratios to
the first model measured in the same run.

Before each model's turn in a round the process sleeps ``settle_seconds``: the previous session's
worker threads keep spinning after its last run and take the core the next session's worker needs.
Without the pause, switching models every 30 ms made a MobileNetV3-style net at batch 1 read
1.1–1.8 ms instead of the 0.88 ms it takes alone; a 50 ms pause (the default) brings it back near that.

Threads are pinned while timing (``pinned_cores``): the timing thread to the first core the process may use, the
sessions' pool threads (made by ``sessions``) one to each of the next. Left to the scheduler on a 2-core VM, a
session's pool thread at random shared the caller's core, and every run paid a fixed few milliseconds:
all-MiniLM-L6-v2 read 16.5 ms in five sessions made in a row and 22.4-24.2 ms in the next three, which moved
its INT8 model's ratio from 0.23x to 0.32x. Pinned, 16 sessions out of 16 read 16.4-17.0 ms. Pinning only one
of them did not help (the pool inherits the caller's core: 57 ms).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from onnxcompress import runtime

MAX_RUNS_PER_ROUND = 100_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SETTLE_SECONDS = 0.05


@dataclasses.dataclass
class Latency:
    """Latency of one model in milliseconds, over the clean rounds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    rounds_kept: int
    rounds_dropped: int
    batch: int
    threads: int

    @property
    def clean(self) -> bool:
        """True when the figures come from rounds on a quiet machine (else from noisy ones)."""
        return self.rounds_kept > 0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {**dataclasses.asdict(self), "clean": self.clean}


def pinned_cores(threads: int) -> tuple[int, str] | None:
    """The core the timing thread runs on and ORT's affinity string giving each of the ``threads - 1`` pool threads
    one of the next cores (ORT numbers processors from 1); None when there are not ``threads`` cores to go round
    (or no way to pin, off Linux): pinning then would only crowd them."""
    if not hasattr(os, "sched_getaffinity") or threads < 2:
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < threads:
        return None
    return cores[0], ";".join(str(core + 1) for core in cores[1:threads])


def sessions(models: Sequence, *, threads: int | None = None, optimization: str = "all") -> list[ort.InferenceSession]:
    """ORT sessions of ``models`` (what ``runtime.session`` takes) for ``measure``: their pool threads pinned to the
    cores the timing thread leaves free (``pinned_cores``). None threads: ``runtime.resolve_threads``."""
    threads = runtime.resolve_threads(threads)
    pinned = pinned_cores(threads)
    return [runtime.session(model, threads=threads, optimization=optimization, affinities=pinned[1] if pinned else None)
            for model in models]


@contextlib.contextmanager
def timing_thread_pinned(threads: int) -> Iterator[None]:
    """Run the block with the calling thread on the first core (``pinned_cores``), its former cores restored after."""
    pinned = pinned_cores(threads)
    if pinned is None:
        yield
        return
    former = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {pinned[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, former)


def measure(
    sessions: Sequence[ort.InferenceSession],
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    batch: int,
    threads: int | None = None,
    rounds: int = 7,
    round_seconds: float = 0.3,
    warmup: int = 3,
    max_foreign_cores: float = 0.25,
    max_extra_rounds: int | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> list[Latency]:
    """Median latency of each session (best made by ``sessions``, at the same ``threads``) on its feeds, alternating
    sessions round by round, the calling thread pinned (``timing_thread_pinned``).

    Dropped rounds are retried up to ``max_extra_rounds`` extra times (default: ``2 * rounds``).
    A model that does not run on its feeds is a one-line ``UsageError`` (``runtime.run``) at its first warm-up run.
    """
    threads = runtime.resolve_threads(threads)
    with timing_thread_pinned(threads):
        for sess, feed in zip(sessions, feeds):
            if warmup:
                runtime.run(sess, feed)  # the first warm-up run
        feeds = [runtime.ort_feeds(feed) for feed in feeds]
        for sess, feed in zip(sessions, feeds):
            for _ in range(warmup - 1):
                sess.run(None, feed)
        runs_per_round = [_runs_for(sess, feed, round_seconds) for sess, feed in zip(sessions, feeds)]
        extra = 2 * rounds if max_extra_rounds is None else max_extra_rounds
        clean_rounds: list[list[list[float]]] = []
        noisy_rounds: list[list[list[float]]] = []
        while len(clean_rounds) < rounds and len(clean_rounds) + len(noisy_rounds) < rounds + extra:
            round_samples, foreign = _one_round(sessions, feeds, runs_per_round, settle_seconds)
            (clean_rounds if foreign <= max_foreign_cores else noisy_rounds).append(round_samples)
    used = clean_rounds or noisy_rounds
    return [
        _summarize([t for r in used for t in r[i]], len(clean_rounds), len(noisy_rounds), batch, threads)
        for i in range(len(sessions))
    ]


def _runs_for(sess: ort.InferenceSession, feed: Mapping[str, np.ndarray], seconds: float) -> int:
    """Runs that fill about ``seconds``: a round must span many clock ticks (10 ms each) for
    /proc/stat to see another process's CPU use during it, even on a model that takes microseconds."""
    start = time.perf_counter()
    sess.run(None, dict(feed))
    once = max(time.perf_counter() - start, 1e-5)
    return int(min(max(seconds / once, 3), MAX_RUNS_PER_ROUND))


def _one_round(sessions, feeds, runs_per_round, settle_seconds: float) -> tuple[list[list[float]], float]:
    busy0, own0, wall0 = _system_busy_ticks(), _own_cpu_seconds(), time.perf_counter()
    round_samples = []
    for sess, feed, runs in zip(sessions, feeds, runs_per_round):
        feed = dict(feed)
        time.sleep(settle_seconds)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            sess.run(None, feed)
            times.append((time.perf_counter() - start) * 1e3)
        round_samples.append(times)
    wall = max(time.perf_counter() - wall0, 1e-6)
    foreign_seconds = (_system_busy_ticks() - busy0) / CLOCK_TICKS - (_own_cpu_seconds() - own0)
    return round_samples, max(foreign_seconds, 0.0) / wall


def _summarize(samples: list[float], kept: int, dropped: int, batch: int, threads: int) -> Latency:
    arr = np.asarray(samples)
    return Latency(
        median_ms=float(np.median(arr)),
        p10_ms=float(np.percentile(arr, 10)),
        p90_ms=float(np.percentile(arr, 90)),
        runs=int(arr.size),
        rounds_kept=kept,
        rounds_dropped=dropped,
        batch=batch,
        threads=threads,
    )


def _system_busy_ticks() -> int:
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
