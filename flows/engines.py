"""Where a stage's shard tasks run, chosen by `orchestration.engine`, and the `gpu` slots they hold.

- `threads`: `max_workers` threads of the flow process share its device (the default; one machine).
- `processes`: one worker process per entry of `orchestration.devices`, each bound to its device for
  life; Prefect hands each shard to whichever worker is free, so a slow shard never holds up a fixed
  slice of the plan (the paper's scripts split shards by index per GPU).
- `dask`: an existing Dask cluster (`dask_address`; on GPU nodes run dask-cuda's one-worker-per-GPU
  cluster) or a local one of `max_workers` processes.

Every model task holds one slot of the Prefect global concurrency limit `orchestration.gpu_limit`
while it computes, so the number of models working at once stays within the GPUs, across all runs
that share the Prefect server.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_client, get_run_logger
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from synthvision.core import stopping
from synthvision.core.config import RunConfig
from synthvision.models.devices import bind_device, expand_devices
from tasks.slots import lease_storage_problem


def local_workers(config: RunConfig) -> int:
    """How many shard tasks this run executes at once."""
    orchestration = config.orchestration
    return (
        len(expand_devices(orchestration.devices)) if orchestration.engine == "processes" else orchestration.max_workers
    )


@contextmanager
def shard_task_runner(config: RunConfig) -> Iterator[TaskRunner]:
    """The task runner for a stage's waves (Prefect starts a copy per wave flow run)."""
    orchestration = config.orchestration
    if orchestration.engine == "threads":
        yield StoppingThreadPoolTaskRunner(max_workers=orchestration.max_workers)
    elif orchestration.engine == "processes":
        devices = expand_devices(orchestration.devices)
        with tempfile.TemporaryDirectory(prefix="synthvision-devices-") as lock_dir:
            yield ProcessPoolTaskRunner(max_workers=len(devices), initializer=bind_device, initargs=(devices, lock_dir))
    else:
        from prefect_dask import DaskTaskRunner  # optional: pip install 'synthvision[dask]'

        if orchestration.dask_address:
            yield DaskTaskRunner(address=orchestration.dask_address)
        else:
            cluster = {
                "n_workers": orchestration.max_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
            with _environment_kept():
                yield DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster)


class StoppingThreadPoolTaskRunner(ThreadPoolTaskRunner):
    """Prefect's thread pool, which does not wait for its threads' shards when the process was told to
    stop (`flows/signals.py`): they are abandoned uncommitted, and the process ends without them."""

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if stopping.requested() is not None and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        super().__exit__(exc_type, exc_value, traceback)


@contextmanager
def _environment_kept() -> Iterator[None]:
    """Restore this process's environment when the block ends. distributed's LocalCluster sets
    OMP_NUM_THREADS=1 (and MKL's and OpenBLAS's) here for its workers and leaves them set: every
    process started after it (a CLI run, a worker) would run torch on one thread."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def ensure_gpu_limit(config: RunConfig) -> int:
    """Make sure the global concurrency limit the model tasks hold exists; returns its slots.

    `gpu_slots` set: the limit is set to it. Otherwise a missing limit is created with one slot per
    local worker, and an existing one is left as the operator set it (it may be sized for a whole
    cluster), with a warning when it would leave local workers idle."""
    orchestration = config.orchestration
    if orchestration.gpu_limit is None:
        return local_workers(config)
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        problem = lease_storage_problem(client) if PREFECT_API_URL.value() else None  # a temporary server dies with us
        if problem:
            logger.warning("%s", problem)
        if orchestration.gpu_slots is not None:
            client.upsert_global_concurrency_limit_by_name(orchestration.gpu_limit, orchestration.gpu_slots)
            return orchestration.gpu_slots
        workers = local_workers(config)
        try:
            limit = client.read_global_concurrency_limit_by_name(orchestration.gpu_limit)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=orchestration.gpu_limit, limit=workers)
                )
            except ObjectAlreadyExists:  # another run, started at the same moment, created it first
                limit = client.read_global_concurrency_limit_by_name(orchestration.gpu_limit)
            else:
                logger.info("created global concurrency limit %r with %d slots", orchestration.gpu_limit, workers)
                return workers
    if not limit.active or limit.limit < workers:
        logger.warning(
            "global concurrency limit %r has %d slots%s for %d local workers: set orchestration.gpu_slots, "
            "or `prefect global-concurrency-limit update %s --limit N`",
            orchestration.gpu_limit,
            limit.limit,
            "" if limit.active else " and is inactive",
            workers,
            orchestration.gpu_limit,
        )
    return limit.limit
