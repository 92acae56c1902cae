"""Fan a shard task out over every shard of the plan, at any scale, with progress reporting.

A stage runs its shards in waves: each wave is a sub-flow (`<run>-<stage>-wave-0003`) of at most
`orchestration.shards_per_flow_run` task runs, since Prefect's server slows down past a few thousand
task runs in one flow run. Inside a wave at most `orchestration.max_in_flight` shard futures are
outstanding, and only a small summary row is kept per shard, so the flow's memory stays flat for a
million-image plan. Each shard is one task run named `<stage>-shard-00042`. As shards complete, a
progress artifact and a terminal progress bar advance; each wave leaves a table artifact of its shards,
and an index of the manifests it committed, from which `status` reads progress in seconds.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from tqdm import tqdm

from flows.engines import ensure_gpu_limit, shard_task_runner
from synthvision.core.config import RunConfig
from synthvision.core.planning import shard_name
from synthvision.run import open_run
from synthvision.storage.commits import ShardOutcome
from synthvision.storage.store import STORAGE_STATS
from tasks.policy import retry_options
from tasks.stages import generate_shard_task, score_shard_task

SHARD_TASKS = {"generate": generate_shard_task, "score": score_shard_task}


def artifact_key(config: RunConfig, suffix: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{config.run_name}-{suffix}".lower()).strip("-")


def describe(config: RunConfig, stage: str, what: str) -> str:
    """Artifact description: what it shows, and the stage config hash of the outputs it describes."""
    return f"{config.run_name}: {what} (config hash {open_run(config).hashes[stage]})"


def bounded_results(submit: Callable[[Any], PrefectFuture], items: Iterable[Any], limit: int) -> Iterator[Any]:
    """Results of `submit(item)` for every item, as they complete, with at most `limit` outstanding."""
    items = iter(items)
    pending = {submit(item) for item in itertools.islice(items, limit)}
    while pending:
        done = next(as_completed(pending))
        pending.remove(done)
        yield done.result()
        pending.update(submit(item) for item in itertools.islice(items, 1))


def _summary_row(outcome: ShardOutcome) -> dict[str, Any]:
    """A shard's row in its wave's table artifact (a quarantined shard's row says where and why)."""
    manifest = outcome.manifest
    return {
        "shard": outcome.shard,
        "samples": 0 if manifest is None else manifest.count,
        "bytes": 0 if manifest is None else manifest.bytes,
        "done_now": outcome.done_now,
        "attempts": outcome.attempts,
        "dropped": "-"
        if manifest is None
        else ", ".join(f"{k}: {n}" for k, n in sorted(manifest.dropped.items())) or "-",
        "seconds": None if manifest is None else manifest.timings.get("total_s"),
        # where and when the shard held its GPU slot (empty for shards committed before)
        "device": outcome.device,
        "slot_start": outcome.slot_start,
        "slot_end": outcome.slot_end,
        "quarantined": outcome.quarantined or "",
    }


@dataclass
class StageSummary:
    """What a shard stage did in one flow run."""

    stage: str
    shards: int
    gpu_slots: int  # slots of the global concurrency limit its shards hold
    waves: int = 0
    done_now: int = 0  # shards computed in this flow run (the rest were committed before)
    samples: int = 0
    task_retries: int = 0
    quarantined: list[str] = field(default_factory=list)  # corrupt input shards moved aside
    storage_requests: dict[str, int] | None = None  # object-store requests of this process

    def add(self, outcomes: list[ShardOutcome]) -> None:
        self.waves += 1
        self.done_now += sum(o.done_now for o in outcomes)
        self.samples += sum(o.manifest.count for o in outcomes if o.manifest is not None)
        self.task_retries += sum(o.attempts - 1 for o in outcomes if o.done_now)
        self.quarantined += [o.shard for o in outcomes if o.quarantined]


@flow(name="shard-wave", flow_run_name="{config.run_name}-{stage}-wave-{wave:04d}")
def shard_wave(config: RunConfig, stage: str, wave: int, start: int, stop: int, progress_id: str) -> list[ShardOutcome]:
    """Shards `start..stop-1` of `stage`, one task run each; returns their outcomes."""
    options = retry_options(config.orchestration)
    task = SHARD_TASKS[stage]
    run = open_run(config)

    def submit(index: int) -> PrefectFuture:
        return task.with_options(task_run_name=f"{stage}-{shard_name(index)}", **options).submit(config, index)

    outcomes: list[ShardOutcome] = []
    with tqdm(total=stop - start, desc=f"{stage} wave {wave}", unit="shard") as bar:
        for outcome in bounded_results(submit, range(start, stop), config.orchestration.max_in_flight):
            outcomes.append(outcome)
            bar.update()
            update_progress_artifact(progress_id, 100.0 * (start + len(outcomes)) / run.plan.num_shards)
    run.commits.index(stage, wave, [o.manifest for o in outcomes if o.manifest is not None])
    outcomes.sort(key=lambda outcome: outcome.shard)
    create_table_artifact(
        [_summary_row(outcome) for outcome in outcomes],
        key=artifact_key(config, f"{stage}-shards-wave-{wave:04d}"),
        description=describe(config, stage, f"{stage} wave {wave} per shard"),
    )
    return outcomes


def run_shard_tasks(config: RunConfig, stage: str) -> StageSummary:
    """Run `stage`'s shard task over every shard, in waves; returns a summary of the stage."""
    run = open_run(config)
    num_shards, per_wave = run.plan.num_shards, config.orchestration.shards_per_flow_run
    progress = create_progress_artifact(
        0.0,
        key=artifact_key(config, f"{stage}-progress"),
        description=describe(config, stage, f"{stage} shards committed (%)"),
    )
    summary = StageSummary(stage, num_shards, ensure_gpu_limit(config))
    requests_before = STORAGE_STATS.snapshot()
    with shard_task_runner(config) as runner:
        wave_flow = shard_wave.with_options(task_runner=runner)
        for wave, start in enumerate(range(0, num_shards, per_wave)):
            summary.add(wave_flow(config, stage, wave, start, min(start + per_wave, num_shards), str(progress)))
    if not run.storage.is_local:
        # this process's object-store requests (the threads engine's; worker processes count their own)
        summary.storage_requests = STORAGE_STATS.since(requests_before)
    return summary
