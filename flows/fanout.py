"""Fan a shard task out over every shard of the plan, with progress reporting.

Each shard is one task run named `<stage>-shard-00042`. As shards complete, a Prefect progress
artifact and a terminal progress bar advance; at the end a table artifact lists every shard.
"""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm import tqdm

from synthvision.config import RunConfig
from synthvision.planning import shard_name
from synthvision.run import open_run
from tasks.policy import retry_options


def artifact_key(config: RunConfig, suffix: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{config.run_name}-{suffix}".lower()).strip("-")


def describe(config: RunConfig, stage: str, what: str) -> str:
    """Artifact description: what it shows, and the stage config hash of the outputs it describes."""
    return f"{config.run_name}: {what} (config hash {open_run(config).hashes[stage]})"


def task_runner(config: RunConfig) -> ThreadPoolTaskRunner:
    return ThreadPoolTaskRunner(max_workers=config.orchestration.max_workers)


def run_shard_tasks(shard_task, config: RunConfig, stage: str) -> dict[str, Any]:
    """Submit `shard_task(config, i)` for every shard; returns a summary of the stage."""
    num_shards = open_run(config).plan.num_shards
    options = retry_options(config.orchestration)
    progress = create_progress_artifact(
        0.0, key=artifact_key(config, f"{stage}-progress"), description=describe(config, stage, f"{stage} shards committed (%)")
    )
    futures = [
        shard_task.with_options(task_run_name=f"{stage}-{shard_name(index)}", **options).submit(config, index)
        for index in range(num_shards)
    ]
    results = []
    with tqdm(total=num_shards, desc=stage, unit="shard") as bar:
        for future in as_completed(futures):
            results.append(future.result())
            bar.update()
            update_progress_artifact(progress, 100.0 * len(results) / num_shards)
    results.sort(key=lambda result: result["shard"])
    rows = [
        {
            "shard": result["shard"],
            "samples": result["count"],
            "bytes": result["bytes"],
            "done_now": result["done_now"],
            "dropped": ", ".join(f"{reason}: {n}" for reason, n in sorted(result["dropped"].items())) or "-",
            "seconds": result["timings"].get("total_s"),
        }
        for result in results
    ]
    create_table_artifact(rows, key=artifact_key(config, f"{stage}-shards"), description=describe(config, stage, f"{stage} per shard"))
    return {
        "stage": stage,
        "shards": num_shards,
        "done_now": sum(result["done_now"] for result in results),
        "samples": sum(result["count"] for result in results),
    }
