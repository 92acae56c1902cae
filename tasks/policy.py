"""Retry and cache policy for shard tasks.

Retries: exponential backoff (delay, 2x, 4x, ...) with random jitter, so that a fleet of workers hit
by the same outage does not retry in lockstep. Not retried: a `SynthvisionError` (bad config, missing
input, a full disk: the user's to fix) and work stopped because its process was told to stop.

Caching: a shard task's cache key is its stage, the run's absolute output URL, the stage config hash, the shard
spec and the sha256 of the committed data, read from the shard's manifest. A shard with no committed
manifest has no key and always runs, so a cache entry can never stand in for output that was deleted
or never finished: storage stays the source of truth, and the cache (which persists across flow runs)
only saves a task run's bookkeeping once its shard is committed.

Computing the key is the one time a task run asks whether its shard is committed: an uncommitted
answer is handed to the task body (`answer_for`), which then does the work without asking again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger
from prefect.cache_policies import CachePolicy
from prefect.runtime import task_run
from prefect.tasks import exponential_backoff

from synthvision.core.config import OrchestrationConfig
from synthvision.core.errors import SynthvisionError
from synthvision.core.hashing import stable_hash
from synthvision.core.manifest import Manifest
from synthvision.core.stopping import StopRequested
from synthvision.run import Run, open_run
from synthvision.stages import generate, score

COMMITTED = {"generate": generate.committed, "score": score.committed}
_UNCOMMITTED: set[str] = set()  # task runs whose cache key found their shard uncommitted


def _retry_unless_user_error(task, task_run, state) -> bool:
    """Whether a failed attempt (with retries left) is tried again; a retry is said as a warning, with
    its error, since it costs a shard's work and may be the first sign of a sick store or server."""
    try:
        state.result()
    except (SynthvisionError, StopRequested):
        return False
    except Exception as error:
        get_run_logger().warning(
            "%s failed (attempt %d of %d), retried: %s",
            task_run.name,
            task_run.run_count,
            task.retries + 1,
            " ".join(f"{type(error).__name__}: {error}".split())[:300],
        )
        return True
    return True


def retry_options(orchestration: OrchestrationConfig) -> dict[str, Any]:
    return {
        "retries": orchestration.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=orchestration.retry_delay_s),
        "retry_jitter_factor": orchestration.retry_jitter,
        "retry_condition_fn": _retry_unless_user_error,
    }


@dataclass
class CommittedShard(CachePolicy):
    # CachePolicy's own dataclass fields come first: always construct with `stage=...`.
    stage: str = ""

    def __post_init__(self) -> None:
        if self.stage not in COMMITTED:
            raise ValueError(f"CommittedShard(stage=...) must be 'generate' or 'score', not {self.stage!r}")

    def compute_key(
        self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        run = open_run(inputs["config"])
        manifest = COMMITTED[self.stage](run, inputs["shard_index"])
        if manifest is None:
            # no key: the task body runs, and takes this answer instead of asking again
            _UNCOMMITTED.add(str(task_ctx.task_run.id))
            return None
        return stable_hash(
            [self.stage, run.storage.canonical_url, manifest.config_hash, manifest.spec_hash, manifest.sha256]
        )


def answer_for(run: Run, stage: str, index: int) -> Manifest | None:
    """Shard `index`'s committed manifest: None when this task run's cache key found none (every
    uncommitted shard's key is computed just before its body runs), else asked now."""
    run_id = str(task_run.id)
    if run_id in _UNCOMMITTED:
        _UNCOMMITTED.discard(run_id)
        return None
    return COMMITTED[stage](run, index)
