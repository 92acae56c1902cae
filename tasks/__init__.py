"""Thin Prefect tasks: each calls one `synthvision.run.Run` method for one shard (or one stage)."""

import tasks.settings  # noqa: F401  (must run before prefect is imported)
from tasks.stages import expand_prompts_task, generate_shard_task, score_shard_task, train_task

__all__ = ["expand_prompts_task", "generate_shard_task", "score_shard_task", "train_task"]
