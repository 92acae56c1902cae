"""One Prefect task per stage, made from its row (`UNIT_TASKS`). `stages.units.ensure` asks once
whether its unit is committed and, only when there is work, the task holds one slot of the global
concurrency limit `orchestration.gpu_limit` while its model works (`tasks/slots.py`; the flows make
sure the limit exists), so no more models work at once than there are GPUs: a shard from its first
model call to its last (`stages.units.ModelTurn`), a whole-run stage for all of its work. Prefect caches
nothing (`NO_CACHE`): storage is the record of what is done, and a task run of a committed unit costs
one read."""

from __future__ import annotations

from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from synthvision.core.config import RunConfig
from synthvision.core.planning import shard_name
from synthvision.core.stage_table import STAGES, Stage
from synthvision.run import open_run
from synthvision.stages.score import CorruptShard
from synthvision.stages.units import ensure
from synthvision.storage.commits import ShardOutcome
from tasks.slots import gpu_slot


def _shard(config: RunConfig, stage: str, index: int) -> ShardOutcome:
    """A shard's outcome; a corrupt input shard (score) is quarantined and reported (`quarantined`),
    and the stage goes on with the others."""
    run = open_run(config)
    name = shard_name(index)
    held: dict[str, Any] = {}  # where and when it held its slot (nothing for a shard committed before)
    try:
        manifest, done_now = ensure(run, stage, index, slot=lambda: gpu_slot(config.orchestration, held))
    except CorruptShard as error:
        get_run_logger().warning("%s", error)
        return ShardOutcome(name, None, quarantined=str(error))
    return ShardOutcome(name, manifest, done_now=done_now, attempts=task_run.run_count, **held)


def _whole_run(config: RunConfig, stage: str) -> tuple[Any, bool]:
    """The stage's committed outcome (the prompt table, a report), and whether it was computed now."""
    return ensure(open_run(config), stage, slot=lambda: gpu_slot(config.orchestration))


def _unit_task(row: Stage) -> Task:
    """A stage's Prefect task, from its row: one shard per task run (`NAME-shard`), or the whole stage."""
    stage = row.name
    if row.per_shard:

        def unit(config: RunConfig, shard_index: int) -> ShardOutcome:
            return _shard(config, stage, shard_index)

        unit.__name__ = unit.__qualname__ = f"{stage}_shard_task"
        return task(unit, name=f"{stage}-shard", tags=["gpu"], cache_policy=NO_CACHE)

    def whole(config: RunConfig) -> tuple[Any, bool]:
        return _whole_run(config, stage)

    whole.__name__ = whole.__qualname__ = f"{stage}_task"
    return task(whole, name=stage, tags=["gpu"], cache_policy=NO_CACHE)


UNIT_TASKS: dict[str, Task] = {row.name: _unit_task(row) for row in STAGES}
