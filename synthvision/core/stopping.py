"""A process-wide request to stop, for work that would otherwise run on after its command was told to
stop (a scheduler's SIGTERM, Ctrl-C).

The main thread learns of a signal at once (Prefect raises in it), but a shard's model work runs in
worker threads, and a wait for a GPU slot may last as long as another run holds it: they ask here
between batches and between tries. `flows/signals.py` sets the request when a signal arrives.
Stopping loses nothing: a shard is committed by its manifest, written last, so a shard stopped
half-way is simply not committed, and the rerun makes it.
"""

from __future__ import annotations

import threading

_requested = threading.Event()
_reason: list[str] = []


class StopRequested(Exception):
    """Work abandoned because its process was told to stop (not retried: the command is ending)."""


def request(reason: str) -> None:
    """Ask every worker of this process to stop at its next check; `reason` says why (e.g. `SIGTERM`)."""
    if not _requested.is_set():
        _reason.append(reason)
        _requested.set()


def requested() -> str | None:
    """Why this process was asked to stop, or None while it goes on."""
    return _reason[0] if _requested.is_set() else None


def check() -> None:
    """Raise `StopRequested` if this process was asked to stop."""
    if _requested.is_set():
        raise StopRequested(f"stopped by {_reason[0]}: abandoned before commit (a rerun makes it)")


def wait(seconds: float) -> None:
    """Sleep up to `seconds`, waking (with `StopRequested`) as soon as a stop is requested."""
    _requested.wait(seconds)
    check()
