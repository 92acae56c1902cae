"""Per-process memoisation keyed by a config: models and runs are built once and shared by the shard
tasks that a flow runs in this process's threads."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

C = TypeVar("C", bound=BaseModel)
T = TypeVar("T")


def once_per_config(factory: Callable[[C], T]) -> Callable[[C], T]:
    """Memoise `factory(config)` by the config's JSON; thread-safe; `.cache_clear()` empties it."""
    cache: dict[str, T] = {}
    lock = threading.Lock()

    @functools.wraps(factory)
    def get(config: C) -> T:
        key = config.model_dump_json()
        with lock:
            if key not in cache:
                cache[key] = factory(config)
            return cache[key]

    get.cache_clear = cache.clear  # type: ignore[attr-defined]
    return get
