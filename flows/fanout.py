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
from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from tqdm import tqdm

from flows.engines import ensure_gpu_limit, shard_task_runner
from synthvision.config import RunConfig
from synthvision.manifest import Manifest
from synthvision.planning import shard_name
from synthvision.run import open_run
from synthvision.storage import STORAGE_STATS
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


def _summary_row(result: dict[str, Any]) -> dict[str, Any]:
    if "quarantined" in result:  # a corrupt input shard, moved aside: the row says where and why
        return {
            "shard": result["shard"],
            "samples": 0,
            "done_now": False,
            "attempts": 1,
            "quarantined": result["quarantined"],
        }
    return {
        "shard": result["shard"],
        "samples": result["count"],
        "bytes": result["bytes"],
        "done_now": result["done_now"],
        "attempts": result.get("attempts", 1),
        "dropped": ", ".join(f"{reason}: {n}" for reason, n in sorted(result["dropped"].items())) or "-",
        "seconds": result["timings"].get("total_s"),
        # where and when the shard held its GPU slot (empty for shards committed before)
        "device": result.get("device", "-"),
        "slot_start": result.get("slot_start"),
        "slot_end": result.get("slot_end"),
    }


@flow(name="shard-wave", flow_run_name="{config.run_name}-{stage}-wave-{wave:04d}")
def shard_wave(
    config: RunConfig, stage: str, wave: int, start: int, stop: int, progress_id: str
) -> list[dict[str, Any]]:
    """Shards `start..stop-1` of `stage`, one task run each; returns their summary rows."""
    options = retry_options(config.orchestration)
    task = SHARD_TASKS[stage]
    num_shards = open_run(config).plan.num_shards

    def submit(index: int) -> PrefectFuture:
        return task.with_options(task_run_name=f"{stage}-{shard_name(index)}", **options).submit(config, index)

    rows, manifests = [], []
    with tqdm(total=stop - start, desc=f"{stage} wave {wave}", unit="shard") as bar:
        for result in bounded_results(submit, range(start, stop), config.orchestration.max_in_flight):
            rows.append(_summary_row(result))
            if "quarantined" not in result:
                manifests.append(Manifest.from_record(result))
            bar.update()
            update_progress_artifact(progress_id, 100.0 * (start + len(rows)) / num_shards)
    open_run(config).index_wave(stage, wave, manifests)
    rows.sort(key=lambda row: row["shard"])
    create_table_artifact(
        rows,
        key=artifact_key(config, f"{stage}-shards-wave-{wave:04d}"),
        description=describe(config, stage, f"{stage} wave {wave} per shard"),
    )
    return rows


def run_shard_tasks(config: RunConfig, stage: str) -> dict[str, Any]:
    """Run `stage`'s shard task over every shard, in waves; returns a summary of the stage."""
    num_shards = open_run(config).plan.num_shards
    per_wave = config.orchestration.shards_per_flow_run
    progress = create_progress_artifact(
        0.0,
        key=artifact_key(config, f"{stage}-progress"),
        description=describe(config, stage, f"{stage} shards committed (%)"),
    )
    summary = {
        "stage": stage,
        "shards": num_shards,
        "waves": 0,
        "done_now": 0,
        "samples": 0,
        "gpu_slots": ensure_gpu_limit(config),
        "task_retries": 0,
    }
    quarantined: list[str] = []
    requests_before = STORAGE_STATS.snapshot()
    with shard_task_runner(config) as runner:
        wave_flow = shard_wave.with_options(task_runner=runner)
        for wave, start in enumerate(range(0, num_shards, per_wave)):
            rows = wave_flow(config, stage, wave, start, min(start + per_wave, num_shards), str(progress))
            summary["waves"] += 1
            summary["done_now"] += sum(row["done_now"] for row in rows)
            summary["samples"] += sum(row["samples"] for row in rows)
            summary["task_retries"] += sum(row["attempts"] - 1 for row in rows if row["done_now"])
            quarantined += [row["shard"] for row in rows if "quarantined" in row]
    if quarantined:
        summary["quarantined"] = quarantined
    if not open_run(config).storage.is_local:
        # this process's object-store requests (the threads engine's; worker processes count their own)
        summary["storage_requests"] = STORAGE_STATS.since(requests_before)
    return summary
