"""CPU work beside the model: a function mapped over a stream by worker threads, in order, a bounded
number of items ahead.

The model's thread spends its time inside the model (a GPU sync, or a C kernel), which releases the
GIL; image decoding, resizing and encoding (Pillow, zlib, torch) release it too. So threads, not
processes, overlap the two, with no pickling and no second copy of the model. Results come back in
the input's order, so what is written or batched is byte for byte what the serial path gives.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

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
) -> Iterator[R]:
    """`map(function, items)`, computed by `workers` threads at most `ahead` items ahead of the consumer.

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
    with ThreadPoolExecutor(workers, thread_name_prefix="synthvision-cpu", initializer=initializer) as pool:

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
                    if not put(pool.submit(function, item)):
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
