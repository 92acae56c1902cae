"""Every flow that writes to a run's output holds the output's lock and checks its config version
first (`Run.writing`): two runs never generate the same shard, and one output never mixes configs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from synthvision.core.config import RunConfig
from synthvision.run import open_run

Result = TypeVar("Result")


def writes_output(body: Callable[..., Result]) -> Callable[..., Result]:
    """Wrap a flow function whose first parameter is the run config (put it under `@flow`; the
    flow keeps the function's signature, so its parameters show as before in Prefect)."""

    @functools.wraps(body)
    def wrapper(config: RunConfig, *args: Any, **kwargs: Any) -> Result:
        with open_run(config).writing():
            return body(config, *args, **kwargs)

    return wrapper
