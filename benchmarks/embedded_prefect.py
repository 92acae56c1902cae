"""Shared by the benchmarks: a private Prefect home, quiet logs, and an embedded server started before
anything is timed. Import it before anything that imports Prefect."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import tasks  # noqa: E402,F401  (synthvision's Prefect defaults)
from prefect import flow  # noqa: E402


@flow
def _noop() -> None:
    """Nothing: running it starts the embedded server."""


def warm_up() -> None:
    """Start the embedded Prefect server (about 10 s) outside the timed region."""
    _noop()
