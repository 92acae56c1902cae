"""Prefect flows: one per stage (prompts, generate, score, train) and the end-to-end `synthesize`."""

import tasks  # noqa: F401  (sets Prefect defaults before prefect is imported)
