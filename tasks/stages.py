"""One Prefect task per unit of work. Model tasks carry the `gpu` tag, so a Prefect concurrency limit
on that tag (`prefect concurrency-limit create gpu N`) caps how many hold a device at once."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from prefect import task

from synthvision.config import RunConfig
from synthvision.run import open_run
from tasks.policy import CommittedShard


@task(name="expand-prompts", tags=["gpu"])
def expand_prompts_task(config: RunConfig) -> dict[str, Any]:
    prompts, expanded = open_run(config).ensure_prompts()
    return {"prompts": len(prompts), "expanded_now": expanded, "by_source": dict(Counter(p.source for p in prompts))}


@task(name="generate-shard", tags=["gpu"], cache_policy=CommittedShard(stage="generate"), result_serializer="json")
def generate_shard_task(config: RunConfig, shard_index: int) -> dict[str, Any]:
    manifest, generated = open_run(config).generate(shard_index)
    return {**asdict(manifest), "done_now": generated}


@task(name="score-shard", tags=["gpu"], cache_policy=CommittedShard(stage="score"), result_serializer="json")
def score_shard_task(config: RunConfig, shard_index: int) -> dict[str, Any]:
    manifest, scored = open_run(config).score(shard_index)
    return {**asdict(manifest), "done_now": scored}


@task(name="train-classifier", tags=["gpu"])
def train_task(config: RunConfig) -> dict[str, Any]:
    return open_run(config).train_and_evaluate()
