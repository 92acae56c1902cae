"""One writer per output: a lock object at the run root, held while a flow run writes there.

Two flow runs of the same config started at once must not both generate a shard. The first takes
`lock.json` by exclusive create (O_EXCL on a local disk, a conditional `If-None-Match: *` PUT on S3);
the second waits for it to go (`orchestration.lock_wait_s`), then finds every shard committed and
skips them all. A lock left by a killed run is taken over: at once when its owner ran on this host and
that process is gone, otherwise when its heartbeat, renewed every `ttl/3` seconds by a daemon thread
of the holder, is older than `orchestration.lock_ttl_s`.

Nested flows of one process (the end-to-end flow calls one flow per stage) share the holder's lock.
The record names its holder's run (`holder`: the orchestrator's flow run, say), so that `status` can
say who writes, and a run that takes a dead holder's lock over learns whose run it resumes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthvision.core.errors import DataError
from synthvision.storage.store import Storage, access_errors

LOCK_FILE = "lock.json"
log = logging.getLogger(__name__)

_held: dict[str, int] = {}  # canonical output URL -> nesting depth, for the locks this process holds
_held_guard = threading.Lock()


def _process_started(pid: int) -> str | None:
    """The kernel's start time of process `pid` (so a recycled pid is not taken for the lock's owner)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_gone(record: dict[str, Any], ttl_s: float) -> bool:
    """Whether the lock's holder is certainly not running: a dead process on this host, or a
    heartbeat older than `ttl_s` (a holder elsewhere that stopped renewing)."""
    if record.get("host") == socket.gethostname():
        pid = int(record.get("pid", -1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, someone else's
        if record.get("process_started") and _process_started(pid) not in (None, record["process_started"]):
            return True
    return time.time() - float(record.get("heartbeat", 0)) > ttl_s


def holder(storage: Storage, ttl_s: float) -> dict[str, Any] | None:
    """The lock's record (host, pid, heartbeat, the holder's `run`), with `gone` set when its holder
    is certainly not running; None when no run holds the output."""
    try:
        record = json.loads(storage.read_bytes(LOCK_FILE))
    except FileNotFoundError:
        return None
    except ValueError:
        record = {}
    return {**record, "gone": _owner_gone(record, float(record.get("ttl_s", ttl_s)))}


class OutputLock:
    def __init__(
        self, storage: Storage, ttl_s: float, wait_s: float, poll_s: float = 0.5, run: dict[str, Any] | None = None
    ):
        self.storage = storage
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.run = run or {}  # who holds it, for people: e.g. the flow run's name, id and URL
        self.taken_over: dict[str, Any] | None = None  # the record of a dead holder this lock replaced
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _record(self) -> bytes:
        pid = os.getpid()
        return json.dumps(
            {
                "token": self.token,
                "host": socket.gethostname(),
                "pid": pid,
                "process_started": _process_started(pid),
                "heartbeat": time.time(),
                "ttl_s": self.ttl_s,
                "run": self.run,
            }
        ).encode()

    def _read(self) -> tuple[bytes, dict[str, Any]] | None:
        try:
            raw = self.storage.read_bytes(LOCK_FILE)
        except FileNotFoundError:
            return None
        try:
            return raw, json.loads(raw)
        except ValueError:
            return raw, {}  # half a record cannot be: writes are atomic; treat as someone else's, aged by ttl

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait_s
        announced = False
        while True:
            with access_errors(self.storage.url, f"writing {LOCK_FILE}"):  # the first write of every run
                created = self.storage.create_exclusive(LOCK_FILE, self._record())
            if created:
                self._heartbeat = threading.Thread(target=self._renew, name="output-lock-heartbeat", daemon=True)
                self._heartbeat.start()
                return
            held = self._read()
            if held is None:
                continue  # released between our attempt and our read
            raw, record = held
            if _owner_gone(record, self.ttl_s):
                log.warning(
                    "taking over %s from a run that is gone (%s pid %s)",
                    self.storage.url_of(LOCK_FILE),
                    record.get("host"),
                    record.get("pid"),
                )
                again = self._read()
                if again is not None and again[0] == raw:  # still the stale record, not a new holder's
                    self.storage.delete(LOCK_FILE)
                    self.taken_over = record
                continue
            if time.monotonic() > deadline:
                raise DataError(
                    f"output {self.storage.url} is being written by another run ({record.get('host')} pid "
                    f"{record.get('pid')}; "
                    f"{self.storage.url_of(LOCK_FILE)}): waited {self.wait_s:.0f} s (orchestration.lock_wait_s)"
                )
            if not announced:
                log.warning(
                    "output %s is being written by another run (%s pid %s): waiting for it",
                    self.storage.url,
                    record.get("host"),
                    record.get("pid"),
                )
                announced = True
            time.sleep(self.poll_s)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            held = self._read()
            if held is None or held[1].get("token") != self.token:
                log.error("lost the lock on %s to another run", self.storage.url)
                return
            self.storage.write_bytes(LOCK_FILE, self._record())

    def release(self) -> None:
        """Stop renewing and remove the lock if it is this one's (nothing to do after a failed acquire:
        storage that refused the lock would only raise again while its first error is reported)."""
        if self._heartbeat is None:
            return
        self._stop.set()
        self._heartbeat.join()
        held = self._read()
        if held is not None and held[1].get("token") == self.token:
            self.storage.delete(LOCK_FILE)


@contextmanager
def locked_output(
    storage: Storage, ttl_s: float, wait_s: float, run: dict[str, Any] | None = None
) -> Iterator[OutputLock | None]:
    """Hold the output's lock for the block (re-entrant within a process); yields the lock when this
    is the outermost hold, which took it, and None inside it."""
    key = storage.canonical_url
    with _held_guard:
        nested = _held.get(key, 0) > 0
        _held[key] = _held.get(key, 0) + 1
    lock = None if nested else OutputLock(storage, ttl_s, wait_s, run=run)
    try:
        if lock is not None:
            lock.acquire()
        yield lock
    finally:
        with _held_guard:
            _held[key] -= 1
        if lock is not None:
            lock.release()
