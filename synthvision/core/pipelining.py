"""CPU work beside the model: a function mapped over a stream by worker threads, in order, a bounded
number of items ahead.

The model's thread spends its time inside the model (a GPU sync, or a C kernel), which releases the
GIL; image decoding, resizing and encoding (Pillow, zlib, torch) release it too. So threads overlap
the two, with no pickling and no second copy of the model. But the Python between those C calls holds
the GIL, and on a GPU node's many cores it, not the cores, sets the rate (README: Benchmarks,
`gil_work.py`): there the work can go to `WorkerProcesses`, each with its own GIL. Results come back
in the input's order, so what is written or batched is byte for byte what the serial path gives.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_MAX_WORKERS = 8


def cpu_workers(configured: int | None) -> int:
    """Threads for CPU work beside a model: as configured (0: none, in the model's thread), else one
    per core up to DEFAULT_MAX_WORKERS (beyond that a GPU node's cores are better spent on other GPUs' workers)."""
    if configured is not None:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, DEFAULT_MAX_WORKERS)


def ordered_map(
    function: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    ahead: int,
    initializer: Callable[[], None] | None = None,
    processes: WorkerProcesses | None = None,
) -> Iterator[R]:
    """`map(function, items)`, computed by `workers` threads (or by `processes`, which outlive the
    call, when given: `function` and the items then travel pickled) at most `ahead` items ahead of
    the consumer.

    A feeder thread draws `items` (reading a tar and hashing it is work too) and hands each to the
    workers; the consumer's thread only waits for results, in order. `workers=0` is the plain serial
    map. An error raised by `function` or by `items` is raised where its result would be yielded.
    Closing the iterator early stops the feeder and waits for the items in flight, so no thread runs
    on after the caller has moved on. `initializer` runs once in each worker thread.
    """
    if workers <= 0:
        yield from map(function, items)
        return
    futures: queue.Queue[Future[R] | _End] = queue.Queue(maxsize=max(ahead, 1))
    stop = threading.Event()
    threads = ThreadPoolExecutor(workers, "synthvision-cpu", initializer) if processes is None else nullcontext()
    with threads as pool:
        submit = pool.submit if processes is None else processes.submit

        def put(entry: Future[R] | _End) -> bool:
            while not stop.is_set():
                try:
                    futures.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def feed() -> None:
            try:
                for item in items:
                    if not put(submit(function, item)):
                        return
                put(_End(None))
            except BaseException as error:  # the items' own error, raised in the consumer's thread
                put(_End(error))

        feeder = threading.Thread(target=feed, name="synthvision-feed", daemon=True)
        feeder.start()
        try:
            while not isinstance(entry := futures.get(), _End):
                yield entry.result()
            if entry.error is not None:
                raise entry.error
        finally:
            stop.set()
            feeder.join()
            while not futures.empty():
                entry = futures.get_nowait()
                if isinstance(entry, Future):
                    entry.cancel()


@dataclass(frozen=True)
class _End:
    """The feeder's last entry: the items ran out (error None), or drawing them failed."""

    error: BaseException | None


class WorkerProcesses:
    """Worker processes kept for the life of this process (started once: each imports torch), for
    CPU work whose Python would hold one process's GIL too long.

    Started by `spawn`, never `fork`: the parent runs threads (Prefect's, the feeder's), and a fork
    copies their locks in whatever state they are. `initializer(*initargs)` runs once in each worker
    (what every item needs, such as a model's preprocessing, travels once, not with each item). A
    worker whose parent is gone exits (a killed run leaves no orphans). When a worker dies, the pool
    is broken: the call that met it fails with `BrokenProcessPool`, and the next `submit` starts
    new processes.
    """

    def __init__(self, count: int, initializer: Callable[..., None], initargs: tuple[Any, ...]):
        self.count, self._initializer, self._initargs = count, initializer, initargs
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., R], *args: Any) -> Future[R]:
        pool = self._started()
        try:
            return pool.submit(function, *args)
        except BrokenProcessPool:  # a worker died since the last call: new processes, once
            self.discard(pool)
            return self._started().submit(function, *args)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.count,
                    multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(os.getpid(), self._initializer, self._initargs),
                )
            return self._pool

    def discard(self, pool: ProcessPoolExecutor | None = None) -> None:
        """Shut down the processes (those of `pool` only, if given: a broken pool's)."""
        with self._lock:
            if self._pool is None or (pool is not None and pool is not self._pool):
                return
            self._pool, stopping = None, self._pool
        stopping.shutdown(wait=False, cancel_futures=True)


def in_daemon_process() -> bool:
    """Whether this process may not start processes of its own (a Dask worker's, by default)."""
    return bool(multiprocessing.current_process().daemon)


def _start_worker(parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    threading.Thread(target=_exit_with, args=(parent,), name="synthvision-orphan-watch", daemon=True).start()
    initializer(*initargs)


def _exit_with(parent: int) -> None:
    """Exit when the parent is gone (SIGKILL leaves a pool's workers waiting on a queue forever)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
