"""One Prefect task per unit of work: `stages.units.ensure` asks once whether its unit is committed
and, only when there is work, the task holds one slot of the global concurrency limit
`orchestration.gpu_limit` while the stage function computes (`tasks/slots.py`; the flows make sure
the limit exists), so no more models work at once than there are GPUs. Prefect caches nothing
(`NO_CACHE`): storage is the record of what is done, and a task run of a committed unit costs one read."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from synthvision.core.config import RunConfig
from synthvision.reports.fewshot import FewShotReport
from synthvision.reports.quality import QualityReport
from synthvision.reports.resnets import PretrainReport, ScratchReport, TransferReport
from synthvision.reports.train import TrainReport
from synthvision.run import open_run
from synthvision.stages.prompts import PromptsOutcome
from synthvision.stages.score import CorruptShard
from synthvision.stages.units import ensure
from synthvision.storage.commits import ShardOutcome
from tasks.slots import gpu_slot


def _shard(config: RunConfig, stage: str, index: int) -> ShardOutcome:
    run = open_run(config)
    held: dict[str, Any] = {}  # where and when it held its slot (nothing for a shard committed before)
    manifest, done_now = ensure(run, stage, index, slot=lambda: gpu_slot(config.orchestration, held))
    return ShardOutcome(run.plan.shard(index).name, manifest, done_now=done_now, attempts=task_run.run_count, **held)


def _whole_run(config: RunConfig, stage: str) -> Any:
    report, _ = ensure(open_run(config), stage, slot=lambda: gpu_slot(config.orchestration))
    return report


@task(name="expand-prompts", tags=["gpu"], cache_policy=NO_CACHE)
def expand_prompts_task(config: RunConfig) -> PromptsOutcome:
    table, done_now = ensure(open_run(config), "prompts", slot=lambda: gpu_slot(config.orchestration))
    return PromptsOutcome.of(table, done_now=done_now)


@task(name="generate-shard", tags=["gpu"], cache_policy=NO_CACHE)
def generate_shard_task(config: RunConfig, shard_index: int) -> ShardOutcome:
    return _shard(config, "generate", shard_index)


@task(name="score-shard", tags=["gpu"], cache_policy=NO_CACHE)
def score_shard_task(config: RunConfig, shard_index: int) -> ShardOutcome:
    """A shard's scores; a corrupt shard is quarantined and reported (`quarantined`), and the stage
    goes on with the others."""
    try:
        return _shard(config, "score", shard_index)
    except CorruptShard as error:
        get_run_logger().warning("%s", error)
        return ShardOutcome(open_run(config).plan.shard(shard_index).name, None, quarantined=str(error))


@task(name="train-classifier", tags=["gpu"], cache_policy=NO_CACHE)
def train_task(config: RunConfig) -> TrainReport:
    return _whole_run(config, "train")


@task(name="few-shot", tags=["gpu"], cache_policy=NO_CACHE)
def few_shot_task(config: RunConfig) -> FewShotReport:
    return _whole_run(config, "fewshot")


@task(name="quality", tags=["gpu"], cache_policy=NO_CACHE)
def quality_task(config: RunConfig) -> QualityReport:
    return _whole_run(config, "quality")


@task(name="pretrain", tags=["gpu"], cache_policy=NO_CACHE)
def pretrain_task(config: RunConfig) -> PretrainReport:
    return _whole_run(config, "pretrain")


@task(name="transfer", tags=["gpu"], cache_policy=NO_CACHE)
def transfer_task(config: RunConfig) -> TransferReport:
    return _whole_run(config, "transfer")


@task(name="scratch", tags=["gpu"], cache_policy=NO_CACHE)
def scratch_task(config: RunConfig) -> ScratchReport:
    return _whole_run(config, "scratch")
