"""Prefect flows: one per stage (prompts, generate, score, train) and the end-to-end `synthesize`."""

import tasks.settings  # noqa: F401  (must run before prefect is imported)
