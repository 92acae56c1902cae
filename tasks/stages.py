"""One Prefect task per unit of work: it asks once whether its unit is committed (see
`synthvision.storage.commits`) and, only when there is work, holds one slot of the global concurrency
limit `orchestration.gpu_limit` while the stage function computes (`tasks/slots.py`; the flows make
sure the limit exists), so no more models work at once than there are GPUs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from prefect import get_run_logger, task
from prefect.runtime import task_run

from synthvision.core.config import RunConfig
from synthvision.core.manifest import Manifest
from synthvision.reports.fewshot import FewShotReport
from synthvision.reports.quality import QualityReport
from synthvision.reports.resnets import PretrainReport, ScratchReport, TransferReport
from synthvision.reports.train import TrainReport
from synthvision.run import Run, open_run
from synthvision.stages import fewshot, generate, pretrain, prompts, quality, score, scratch, train, transfer
from synthvision.stages.prompts import PromptsOutcome
from synthvision.stages.score import CorruptShard
from synthvision.storage.commits import ShardOutcome
from tasks.policy import CommittedShard, answer_for
from tasks.slots import gpu_slot

Report = TypeVar("Report")


def _shard(config: RunConfig, stage: str, index: int, work: Callable[[Run, int], Manifest]) -> ShardOutcome:
    run = open_run(config)
    outcome = ShardOutcome(run.plan.shard(index).name, None, attempts=task_run.run_count)
    committed = answer_for(run, stage, index)
    if committed is not None:
        return replace(outcome, manifest=committed)
    with gpu_slot(config.orchestration) as held:
        manifest = work(run, index)
    return replace(outcome, manifest=manifest, done_now=True, **held)


def _whole_run(config: RunConfig, committed: Callable[[Run], Report | None], work: Callable[[Run], Report]) -> Report:
    run = open_run(config)
    existing = committed(run)
    if existing is not None:
        return existing
    with gpu_slot(config.orchestration):
        return work(run)


@task(name="expand-prompts", tags=["gpu"])
def expand_prompts_task(config: RunConfig) -> PromptsOutcome:
    run = open_run(config)
    existing = prompts.committed(run)
    if existing is not None:
        return PromptsOutcome.of(existing, done_now=False)
    with gpu_slot(config.orchestration):
        return PromptsOutcome.of(prompts.expand(run), done_now=True)


@task(name="generate-shard", tags=["gpu"], cache_policy=CommittedShard(stage="generate"), result_serializer="json")
def generate_shard_task(config: RunConfig, shard_index: int) -> ShardOutcome:
    return _shard(config, "generate", shard_index, generate.generate)


@task(name="score-shard", tags=["gpu"], cache_policy=CommittedShard(stage="score"), result_serializer="json")
def score_shard_task(config: RunConfig, shard_index: int) -> ShardOutcome:
    """A shard's scores; a corrupt shard is quarantined and reported (`quarantined`), and the stage
    goes on with the others."""
    try:
        return _shard(config, "score", shard_index, score.score)
    except CorruptShard as error:
        get_run_logger().warning("%s", error)
        return ShardOutcome(open_run(config).plan.shard(shard_index).name, None, quarantined=str(error))


@task(name="train-classifier", tags=["gpu"])
def train_task(config: RunConfig) -> TrainReport:
    return _whole_run(config, train.committed, train.train)


@task(name="few-shot", tags=["gpu"])
def few_shot_task(config: RunConfig) -> FewShotReport:
    return _whole_run(config, fewshot.committed, fewshot.few_shot)


@task(name="quality", tags=["gpu"])
def quality_task(config: RunConfig) -> QualityReport:
    return _whole_run(config, quality.committed, quality.quality)


@task(name="pretrain", tags=["gpu"])
def pretrain_task(config: RunConfig) -> PretrainReport:
    return _whole_run(config, pretrain.committed, pretrain.pretrain)


@task(name="transfer", tags=["gpu"])
def transfer_task(config: RunConfig) -> TransferReport:
    return _whole_run(config, transfer.committed, transfer.transfer)


@task(name="scratch", tags=["gpu"])
def scratch_task(config: RunConfig) -> ScratchReport:
    return _whole_run(config, scratch.committed, scratch.scratch)
