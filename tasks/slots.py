"""GPU slots: one slot of the Prefect global concurrency limit `orchestration.gpu_limit` per model at
work, across every run that shares the Prefect server.

A slot is a lease on the server, renewed while its task lives, so a killed worker's slot comes back
once its lease runs out. Three things make that hold in operation:

- **The server must keep its leases across a restart.** Prefect's default keeps them in the server's
  memory: a restart loses them while the limit still counts them held, and every run then waits on
  slots nobody holds. Start the server with
  `PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem`
  (or prefect-redis's storage for several server replicas); `lease_storage_problem` says, at a run's
  start, when the server does not.
- **A server that is away does not stop the work.** A lease that cannot be renewed while the server
  restarts is not a reason to abandon a shard half-way (the renewal failure is logged); a release that
  cannot reach the server leaves the lease to run out, and the server hands the slot back.
- **A wait is visible and can be stopped.** A wait for a slot says at once, then every `WAIT_LOG_S`,
  what it waits for (held and total slots) and for how long; it ends at once when the process is
  told to stop. A held slot names its task run as the holder (the UI's concurrency page
  shows who holds what).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from uuid import UUID

from httpx import HTTPStatusError
from prefect import get_client, get_run_logger
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._leases import maintain_concurrency_lease  # renews a lease in a thread
from prefect.runtime import task_run

from synthvision.core import stopping
from synthvision.core.config import OrchestrationConfig
from synthvision.core.errors import ConfigError
from synthvision.models.devices import bound_device

WAIT_LOG_S = 30.0  # how often a long wait for a slot says so
ASK_AGAIN_S = 5.0  # when a full limit's answer does not say when to ask again
PERSISTENT_LEASES = "prefect.server.concurrency.lease_storage.filesystem"


@contextmanager
def gpu_slot(orchestration: OrchestrationConfig, record: dict[str, Any] | None = None) -> Iterator[None]:
    """Hold one slot of the run's GPU limit (if it has one); `record` gets where and when it was held
    (`device`, `slot_start`, `slot_end`: the per-shard table's columns)."""
    record = {} if record is None else record
    with ExitStack() as slot:
        if orchestration.gpu_limit is not None:
            _acquire(slot, orchestration)
        record.update(device=bound_device(), slot_start=round(time.time(), 3))
        try:
            yield
        finally:
            record["slot_end"] = round(time.time(), 3)


def _acquire(stack: ExitStack, orchestration: OrchestrationConfig) -> None:
    """Take one slot of `orchestration.gpu_limit` on a lease, renewed until `stack` unwinds and then
    released. Asked of the server directly (Prefect's `concurrency()` logs an error for every wait
    it gives up, and cannot be stopped while it waits): a full limit answers 423 with when to ask
    again, and the wait in between wakes when the process is told to stop."""
    name = orchestration.gpu_limit
    holder = ConcurrencyLeaseHolder(type="task_run", id=task_run.id) if task_run.id else None
    started, said = time.monotonic(), None
    with get_client(sync_client=True) as client:
        while True:
            stopping.check()
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[name], slots=1, mode="concurrency", lease_duration=orchestration.gpu_lease_s, holder=holder
                )
                break
            except HTTPStatusError as error:
                if error.response.status_code != 423:  # 423 Locked: every slot is held
                    raise
                again_s = float(error.response.headers.get("Retry-After", ASK_AGAIN_S))
            if said is None:  # a shared GPU is often busy: said once, quietly
                said = time.monotonic()
                get_run_logger().info("waiting for a slot of GPU limit %r (%s)", name, _occupancy(client, name))
            elif time.monotonic() - said >= WAIT_LOG_S:  # a long wait may be a stranded limit: said loudly
                said = time.monotonic()
                get_run_logger().warning(
                    "still waiting after %.0f s for a slot of GPU limit %r (%s)",
                    said - started,
                    name,
                    _occupancy(client, name),
                )
            stopping.wait(again_s)  # wakes at once when the process is told to stop
    granted = response.json()
    if not granted.get("limits"):
        raise ConfigError(
            f"orchestration.gpu_limit: no global concurrency limit {name!r} on the Prefect server (deleted while the "
            "run was going?): rerun, and the run creates it"
        )
    lease = UUID(granted["lease_id"])
    stack.callback(_release, lease, orchestration.gpu_lease_s)
    stack.enter_context(
        maintain_concurrency_lease(lease, orchestration.gpu_lease_s, raise_on_lease_renewal_failure=False)
    )


def _release(lease: UUID, lease_s: float) -> None:
    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id=lease)
    except Exception as error:  # the server is away: the slot comes back when its lease runs out
        get_run_logger().warning(
            "could not hand a GPU slot back (%s: %s): the server frees it within %.0f s, when its lease runs out",
            type(error).__name__,
            error,
            lease_s,
        )


def _occupancy(client: Any, limit_name: str) -> str:
    """`2 of 2 slots held` (or why that is unknown, and why slots may be held by nobody), for a wait's log line."""
    try:
        limit = client.read_global_concurrency_limit_by_name(limit_name)
        problem = lease_storage_problem(client)
    except Exception as error:  # the server may be restarting: the wait goes on
        return f"the server does not answer: {type(error).__name__}"
    held = f"{limit.active_slots} of {limit.limit} slots held" + ("" if limit.active else ", the limit is inactive")
    return held + (f"; if no run holds them: {problem}" if problem else "")


def lease_storage_problem(client: Any) -> str | None:
    """Why the server's GPU slots would not survive its restart (None when they would, or when the
    server does not say): its leases live in its memory."""
    try:
        storage = client.request("GET", "/admin/settings").json()["server"]["concurrency"]["lease_storage"]
    except Exception:
        return None
    if not storage.endswith(".memory"):
        return None
    return (
        "the Prefect server keeps concurrency leases in memory: if it restarts, the GPU slots held then stay "
        "counted and runs wait on slots nobody holds. Start it with "
        f"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE={PERSISTENT_LEASES}"
    )
