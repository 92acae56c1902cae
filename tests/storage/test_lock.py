"""The output lock: exclusive, re-entrant in a process, waited for while its holder lives, taken over
from a holder that is gone (a dead process on this host, or a heartbeat older than the TTL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from synthvision.core.errors import DataError
from synthvision.storage.lock import LOCK_FILE, OutputLock, locked_output
from synthvision.storage.store import Storage


def held_by(storage: Storage, **record) -> None:
    storage.write_bytes(LOCK_FILE, json.dumps({"token": "other", "heartbeat": time.time(), **record}).encode())


def test_a_live_holder_elsewhere_is_waited_for_then_named(tmp_path):
    storage = Storage(str(tmp_path / "run"))
    held_by(storage, host="another-host", pid=1)
    started = time.monotonic()
    with pytest.raises(
        DataError,
        match=(
            r"being written by another run \(another-host pid 1; .*lock.json\): waited 0 s "
            r"\(orchestration.lock_wait_s\)"
        ),
    ):
        OutputLock(storage, ttl_s=60, wait_s=0.3, poll_s=0.05).acquire()
    assert time.monotonic() - started >= 0.3
    assert json.loads(storage.read_bytes(LOCK_FILE))["token"] == "other"  # left alone


def test_a_holder_gone_quiet_past_the_ttl_is_taken_over(tmp_path):
    storage = Storage(str(tmp_path / "run"))
    held_by(storage, host="another-host", pid=1, heartbeat=time.time() - 61)
    lock = OutputLock(storage, ttl_s=60, wait_s=0)
    lock.acquire()
    assert json.loads(storage.read_bytes(LOCK_FILE))["token"] == lock.token
    lock.release()
    assert not storage.exists(LOCK_FILE)


def test_a_dead_process_on_this_host_loses_its_lock_at_once(tmp_path):
    import socket

    storage = Storage(str(tmp_path / "run"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    held_by(storage, host=socket.gethostname(), pid=dead.pid)  # fresh heartbeat, but nobody home
    lock = OutputLock(storage, ttl_s=3600, wait_s=0)
    lock.acquire()
    lock.release()
    held_by(storage, host=socket.gethostname(), pid=os.getpid())  # this very process: alive
    with pytest.raises(DataError, match="being written by another run"):
        OutputLock(storage, ttl_s=3600, wait_s=0).acquire()


def test_nested_holds_share_one_lock_and_the_outermost_releases_it(tmp_path):
    storage = Storage(str(tmp_path / "run"))
    with locked_output(storage, 60, 0) as outer:
        record = storage.read_bytes(LOCK_FILE)
        with locked_output(storage, 60, 0) as inner:
            assert isinstance(outer, OutputLock) and inner is None
        assert storage.read_bytes(LOCK_FILE) == record
    assert not storage.exists(LOCK_FILE)


def test_the_heartbeat_renews_the_record(tmp_path):
    storage = Storage(str(tmp_path / "run"))
    lock = OutputLock(storage, ttl_s=0.3, wait_s=0)
    lock.acquire()
    first = json.loads(storage.read_bytes(LOCK_FILE))["heartbeat"]
    time.sleep(0.35)
    assert json.loads(storage.read_bytes(LOCK_FILE))["heartbeat"] > first
    lock.release()


def test_storage_that_refuses_the_lock_is_one_error_raised_once(tmp_path, monkeypatch):
    storage = Storage(str(tmp_path / "run"))
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise PermissionError(13, "Access Denied")

    monkeypatch.setattr(storage, "create_exclusive", refuse)
    monkeypatch.setattr(storage, "read_bytes", refuse)  # a release that read the lock back would raise again
    with pytest.raises(
        DataError, match=r"^output .*/run: writing lock.json was refused \(PermissionError: Access Denied\)"
    ):
        with locked_output(storage, 60, 0):
            pass
    assert len(calls) == 1
