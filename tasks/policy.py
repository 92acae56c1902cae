"""Retry policy for shard tasks.

Retries: exponential backoff (delay, 2x, 4x, ...) with random jitter, so that a fleet of workers hit
by the same outage does not retry in lockstep. Not retried: a `SynthvisionError` (bad config, missing
input, a full disk: the user's to fix) and work stopped because its process was told to stop.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.tasks import exponential_backoff

from synthvision.core.config import OrchestrationConfig
from synthvision.core.errors import SynthvisionError
from synthvision.core.stopping import StopRequested


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
