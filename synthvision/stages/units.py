"""Done, or do it: the one place that asks whether a unit of a run is committed.

A unit is a shard of a per-shard stage or a whole-run stage. Its stage file answers `committed(run[,
index])` from storage and computes it with its work function (the stage row's `work_function`), which
commits and never asks. Every caller (a Prefect task, a benchmark, a test) goes through `ensure`, so a
unit is asked once per attempt, and a model's place (`slot`) is taken only when there is work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from importlib import import_module
from typing import TYPE_CHECKING, Any

from synthvision.core.stage_table import stage

if TYPE_CHECKING:
    from synthvision.run import Run


def ensure(
    run: Run, stage_name: str, *index: int, slot: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> tuple[Any, bool]:
    """The unit's committed outcome (a shard's manifest, the prompt table, a stage's report), or, holding
    `slot`, the work that commits it; and whether the work was done now. `index`: a shard's, for a
    per-shard stage."""
    row = stage(stage_name)
    if row.per_shard != bool(index):
        raise ValueError(f"stage {stage_name!r}: {'a shard index' if row.per_shard else 'no index'} expected")
    module = import_module(f"synthvision.stages.{stage_name}")  # looked up now: a patched function is the one used
    existing = module.committed(run, *index)
    if existing is not None:
        return existing, False
    with slot():
        if not row.per_shard:
            run.commits.started[stage_name] = time.monotonic()  # the report records its seconds (`busy_s`)
        return getattr(module, row.work_function)(run, *index), True
