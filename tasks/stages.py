"""One Prefect task per unit of work. A model task holds one slot of the global concurrency limit
`orchestration.gpu_limit` while it computes (the flows make sure the limit exists), so no more models
work at once than there are GPUs; a shard already committed in storage is returned without a slot."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.runtime import task_run

from synthvision.config import RunConfig
from synthvision.devices import bound_device
from synthvision.manifest import Manifest
from synthvision.run import open_run
from synthvision.scoring import CorruptShard
from tasks.policy import CommittedShard


@contextmanager
def gpu_slot(config: RunConfig) -> Iterator[dict[str, Any]]:
    """Hold one slot of the run's GPU limit (if it has one); yields a record of where and when it was held."""
    orchestration = config.orchestration
    slot = (
        nullcontext()
        if orchestration.gpu_limit is None
        else concurrency(orchestration.gpu_limit, occupy=1, lease_duration=orchestration.gpu_lease_s, strict=True)
    )
    with slot:
        held = {"device": bound_device(), "slot_start": round(time.time(), 3)}
        try:
            yield held
        finally:
            held["slot_end"] = round(time.time(), 3)


def _shard_result(
    config: RunConfig, committed: Manifest | None, work: Callable[[], tuple[Manifest, bool]]
) -> dict[str, Any]:
    attempts = task_run.run_count  # > 1 when Prefect retried the shard after a fault
    if committed is not None:
        return {**asdict(committed), "done_now": False, "device": "-", "attempts": attempts}
    with gpu_slot(config) as held:
        manifest, done_now = work()
    return {**asdict(manifest), "done_now": done_now, **held, "attempts": attempts}


@task(name="expand-prompts", tags=["gpu"])
def expand_prompts_task(config: RunConfig) -> dict[str, Any]:
    with gpu_slot(config):
        prompts, expanded = open_run(config).ensure_prompts()
    return {"prompts": len(prompts), "expanded_now": expanded, "by_source": dict(Counter(p.source for p in prompts))}


@task(name="generate-shard", tags=["gpu"], cache_policy=CommittedShard(stage="generate"), result_serializer="json")
def generate_shard_task(config: RunConfig, shard_index: int) -> dict[str, Any]:
    run = open_run(config)
    return _shard_result(config, run.committed_shard(shard_index), lambda: run.generate(shard_index))


@task(name="score-shard", tags=["gpu"], cache_policy=CommittedShard(stage="score"), result_serializer="json")
def score_shard_task(config: RunConfig, shard_index: int) -> dict[str, Any]:
    """A shard's scores; a corrupt shard is quarantined and reported (`quarantined`), and the stage
    goes on with the others."""
    run = open_run(config)
    try:
        return _shard_result(config, run.committed_scores(shard_index), lambda: run.score(shard_index))
    except CorruptShard as error:
        get_run_logger().warning("%s", error)
        return {"shard": run.plan.shard(shard_index).name, "quarantined": str(error)}


@task(name="train-classifier", tags=["gpu"])
def train_task(config: RunConfig) -> dict[str, Any]:
    with gpu_slot(config):
        return open_run(config).train_and_evaluate()


@task(name="few-shot", tags=["gpu"])
def few_shot_task(config: RunConfig) -> dict[str, Any]:
    with gpu_slot(config):
        return open_run(config).few_shot()


@task(name="pretrain", tags=["gpu"])
def pretrain_task(config: RunConfig) -> dict[str, Any]:
    from synthvision.pretraining import stages

    with gpu_slot(config):
        return stages.pretrain(open_run(config))


@task(name="transfer", tags=["gpu"])
def transfer_task(config: RunConfig) -> dict[str, Any]:
    from synthvision.pretraining import stages

    with gpu_slot(config):
        return stages.transfer(open_run(config))


@task(name="scratch", tags=["gpu"])
def scratch_task(config: RunConfig) -> dict[str, Any]:
    from synthvision.pretraining import stages

    with gpu_slot(config):
        return stages.scratch(open_run(config))
