"""Retry and cache policy for shard tasks.

Retries: exponential backoff (delay, 2x, 4x, ...) with random jitter, so that a fleet of workers hit
by the same outage does not retry in lockstep. A `SynthvisionError` (bad config, missing input) is
the user's to fix and is not retried.

Caching: a shard task's cache key is its stage, the run's absolute output URL, the stage config hash, the shard
spec and the sha256 of the committed data, read from the shard's manifest. A shard with no committed
manifest has no key and always runs, so a cache entry can never stand in for output that was deleted
or never finished: storage stays the source of truth, and the cache (which persists across flow runs)
only saves a task run's bookkeeping once its shard is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.tasks import exponential_backoff

from synthvision.config import OrchestrationConfig
from synthvision.errors import SynthvisionError
from synthvision.hashing import stable_hash
from synthvision.run import open_run


def _retry_unless_user_error(task, task_run, state) -> bool:
    try:
        state.result()
    except SynthvisionError:
        return False
    except Exception:
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
        if self.stage not in ("generate", "score"):
            raise ValueError(f"CommittedShard(stage=...) must be 'generate' or 'score', not {self.stage!r}")

    def compute_key(
        self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        run = open_run(inputs["config"])
        index = inputs["shard_index"]
        manifest = run.committed_shard(index) if self.stage == "generate" else run.committed_scores(index)
        if manifest is None:
            return None
        return stable_hash(
            [self.stage, run.storage.canonical_url, manifest.config_hash, manifest.spec_hash, manifest.sha256]
        )
