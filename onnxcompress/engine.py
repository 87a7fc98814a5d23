"""Where ``compare``'s and ``search``'s compression tasks run: here, one after another, or on Ray workers.

An engine ``share``s a value every task reads (shipped once, not once a task) and ``submit``s a function
with its arguments, returning a ``concurrent.futures.Future``; callers wait on the futures as they like.
``SerialEngine`` runs each task at once in this process. ``RayEngine`` runs them as Ray tasks, one CPU
each (and one ORT thread each: ``task_threads``): with no address on a Ray runtime it starts on this machine
with ``workers`` CPUs and shuts down when closed, with an address on that cluster. Tasks get their arguments pickled, so what they take and return
must be plain data (models as bytes: ``trial``). Ray is an optional dependency (``onnxcompress[scale]``),
imported only when a ``RayEngine`` is made. No engine times anything: latency is measured by the caller
afterwards, in one process, so that two timings never share a machine; a pass that times inside its task
(``quantize-static:fp32_prefix=fastest``) runs its sessions, as every ORT run of a pass, at the task's threads
(``runtime.run_threads``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from onnxcompress.errors import UsageError, first_line

T = TypeVar("T")
E = TypeVar("E", bound="_Closing")
INSTALL_HINT = "pip install 'onnxcompress[scale]'"


class Engine(Protocol):
    """Runs tasks: here or elsewhere, one or several at once."""

    def share(self, value: Any) -> Any:
        """``value`` as tasks should be handed it (stored once where they run)."""
        ...

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Start ``fn(*args)``; its result or its exception arrives in the future."""
        ...

    def close(self) -> None:
        """Release the workers (an engine is also a context manager that closes on exit)."""
        ...

    @property
    def task_threads(self) -> int | None:
        """The threads one task should compute with (None: as many as the caller asked for)."""
        ...


class _Closing:
    """An engine as a context manager: ``close`` on leaving the block."""

    def close(self) -> None:
        """Release the workers."""

    def __enter__(self: E) -> E:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SerialEngine(_Closing):
    """Every task in this process, run when submitted."""

    task_threads = None  # one task at a time: it may use every thread asked for

    def share(self, value: Any) -> Any:
        """``value`` itself: tasks run here."""
        return value

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` now; an exception it raises is kept in the future."""
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # the caller decides what a task's failure means
            future.set_exception(exc)
        return future


class RayEngine(_Closing):
    """Tasks on Ray workers, one CPU each: a local runtime of ``workers`` CPUs, or the cluster at ``address``."""

    task_threads = 1  # a task holds one CPU; more threads would contend with the tasks beside it

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            flag = "--ray-address" if address else f"--workers {workers}"
            raise UsageError(f"{flag} runs tasks on Ray, which is not installed: {INSTALL_HINT}") from None
        self._ray = ray
        self._owned = not ray.is_initialized()  # a runtime the caller started is theirs to shut down
        if self._owned:
            try:
                if address:
                    _check_reachable(address)
                    with _stderr_discarded():
                        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
            except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError... for an unusable address
                where = f"the Ray cluster at {address!r}" if address else "a local Ray runtime"
                raise UsageError(f"cannot start or reach {where}: {first_line(exc)}") from None
        self._remote: dict[Callable, Any] = {}

    def share(self, value: Any) -> Any:
        """A reference to ``value`` in Ray's object store; a task given it as an argument receives the value."""
        return self._ray.put(value)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` as a Ray task (one CPU, not retried); a task's exception arrives as itself, not wrapped."""
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        future: Future[T] = Future()
        remote.remote(*args).future().add_done_callback(lambda done: _settle(future, done))
        return future

    def close(self) -> None:
        """Shut down the runtime this engine started (a cluster keeps running; this process only leaves it)."""
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Connect to ``address``'s host and port once, raising ``OSError`` if nothing answers: Ray itself retries an
    unreachable cluster for minutes, logging to the console as it goes. ``auto`` and names without a port are Ray's to resolve."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        socket.create_connection((host, int(port)), timeout=timeout_s).close()


@contextlib.contextmanager
def _stderr_discarded() -> Iterator[None]:
    """File descriptor 2 into a discarded file: Ray's C++ client logs every retry of a host that answers but is no
    Ray cluster there for 20 s, before the one-line error it raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _settle(future: Future, done: Future) -> None:
    """Copy ``done``'s outcome into ``future``, unwrapping a task's exception from Ray's ``RayTaskError``."""
    exc = done.exception()
    if exc is None:
        future.set_result(done.result())
    else:
        cause = getattr(exc, "cause", None)
        future.set_exception(cause if isinstance(cause, BaseException) else exc)


def make_engine(workers: int = 1, address: str | None = None) -> SerialEngine | RayEngine:
    """``SerialEngine`` for one worker and no address, else a ``RayEngine`` (a one-line ``UsageError`` without Ray)."""
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    if workers == 1 and not address:
        return SerialEngine()
    return RayEngine(workers, address)
