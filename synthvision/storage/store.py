"""A run's output tree on any fsspec filesystem (local path, `s3://`, `memory://`).

Layout under the run root:
    run.json                          config snapshot and stage hashes of the latest run
    prompts.parquet                   prompt table (schema metadata holds its config hash)
    shards/shard-00000.tar            WebDataset shard ...
    shards/shard-00000.manifest.json  ... and its commit record, written last
    scores/shard-00000.parquet        CLIP scores and embeddings ...
    scores/shard-00000.manifest.json  ... and their commit record
    shards/wave-0000.index.json       copies of the manifests wave 0 committed (a cache for status)
    train/head.safetensors, train/report.json, train/report.md

Writes are atomic per file: on a local filesystem a file is written under a temporary name and
renamed into place; object stores (S3) make an upload visible only once it completes, so there the
final name is written directly. Either way no reader ever sees half a file under its final name.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import posixpath
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile

from synthvision.core import failpoints
from synthvision.core.errors import DataError, StorageFull
from synthvision.core.manifest import (
    INDEX_SUFFIX,
    MANIFEST_SUFFIX,
    Manifest,
    index_from_json,
    index_path,
    index_to_json,
    manifest_path,
)

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _no_space(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from or during, is a full disk or an exceeded quota."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


class ShortUpload(OSError):
    """The object store holds fewer bytes than were sent (a transient fault: the task is retried)."""


class HashingWriter:
    """A write-only file wrapper that counts bytes and computes sha256 while data streams through."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self._sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.bytes += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class RequestStats:
    """Object-store requests of this process, counted from botocore's events: API calls, HTTP
    attempts (a call that botocore retried has several), attempts that failed (5xx, throttling,
    timeouts, dropped connections), and uploads found short after they completed and so redone."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """Counts since `before` (a snapshot), with `retries`: attempts beyond the first of each call."""
        now = self.snapshot()
        delta = {
            name: now.get(name, 0) - before.get(name, 0)
            for name in ("calls", "attempts", "failed_attempts", "short_uploads")
        }
        return {**delta, "retries": delta["attempts"] - delta["calls"] + delta["short_uploads"]}

    def _on_call(self, **_: Any) -> None:
        self.add("calls")

    def _on_send(self, **_: Any) -> None:
        self.add("attempts")

    def _on_needs_retry(self, response=None, caught_exception=None, **_: Any) -> None:
        status = response[0].status_code if response is not None else None
        if caught_exception is not None or (status is not None and (status >= 500 or status == 429)):
            self.add("failed_attempts")


STORAGE_STATS = RequestStats()
# botocore's standard retry mode (exponential backoff with jitter on 5xx, throttling and connection
# errors) with more attempts than its default 3: a multi-day run meets every kind of transient fault
DEFAULT_S3_RETRIES = {"mode": "standard", "max_attempts": 10}


@functools.cache
def _counted_session():
    """One aiobotocore session per process whose clients report their requests to STORAGE_STATS
    (one object, so fsspec's instance cache still shares one filesystem per set of options)."""
    from aiobotocore.session import AioSession

    session = AioSession()
    session.register("before-call.s3", STORAGE_STATS._on_call)
    session.register("before-send.s3", STORAGE_STATS._on_send)
    session.register("needs-retry.s3", STORAGE_STATS._on_needs_retry)
    return session


def _with_defaults(url: str, options: dict | None) -> dict:
    """S3 options with counted requests and standard retries, unless the user set their own."""
    options = dict(options or {})
    if fsspec.core.split_protocol(url)[0] in ("s3", "s3a"):
        options.setdefault("session", _counted_session())
        config_kwargs = dict(options.get("config_kwargs") or {})
        config_kwargs.setdefault("retries", DEFAULT_S3_RETRIES)
        options["config_kwargs"] = config_kwargs
    return options


class HashingReader:
    """A read-only file wrapper that computes sha256 of everything read through it."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self._sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._sha.update(data)
        return data

    def finish(self) -> str:
        """Read what the consumer left (a tar's end blocks) and return the sha256 of the whole."""
        while self.read(1 << 20):
            pass
        return self._sha.hexdigest()


def _is_access_error(error: BaseException) -> bool:
    """A refusal of the store itself (no or bad credentials, access denied, no endpoint), as opposed to
    a missing object or a fault worth retrying: botocore's and the cloud SDKs' own error classes."""
    if isinstance(error, PermissionError):
        return True
    name = type(error).__name__
    return type(error).__module__.split(".")[0] in ("botocore", "google", "azure") and (
        "Credential" in name or name in ("EndpointConnectionError", "ClientError", "DefaultCredentialsError")
    )


@contextmanager
def access_errors(url: str, doing: str) -> Iterator[None]:
    """Turn the store's refusal into one line naming the output and what was tried (a DataError: the
    CLI prints it and exits 2) instead of a traceback."""
    try:
        yield
    except Exception as error:
        if not _is_access_error(error):
            raise
        detail = " ".join(str(getattr(error, "strerror", None) or error).split())
        raise DataError(
            f"output {url}: {doing} was refused ({type(error).__name__}: {detail}); check the credentials "
            "(AWS_* environment variables, ~/.aws, or storage_options) and the permissions on that location"
        ) from None


class Storage:
    """One run's output root. Paths passed in are relative to the root, with '/' separators.

    `mounts` places a top-level name (a folder such as `shards`, or a file) elsewhere on the same
    storage: runs that share a stage's outputs (`RunConfig.shared_stages`) read and write its folder
    where every run of the same stage hash finds it, while everything else stays under the root."""

    def __init__(self, url: str, storage_options: dict | None = None, mounts: Mapping[str, str] | None = None):
        self.url = url
        options = _with_defaults(url, storage_options)
        self.fs, self.root = fsspec.core.url_to_fs(url, **options)
        self._local = isinstance(self.fs, LocalFileSystem)
        self._mount_urls = dict(mounts or {})
        self._mounts: dict[str, str] = {}
        for name, mount_url in self._mount_urls.items():
            fs, path = fsspec.core.url_to_fs(mount_url, **options)
            if type(fs) is not type(self.fs):
                raise DataError(f"{mount_url} (shared outputs) is not on the same storage as output {url}")
            self._mounts[name] = path

    @property
    def is_local(self) -> bool:
        return self._local

    def check_access(self) -> None:
        """Read the root's run record once, so that missing credentials or a denied bucket are one
        line before any work (a DataError), not a traceback from the first write."""
        with access_errors(self.url, "reading"):
            self.read_json("run.json")

    def path(self, relpath: str) -> str:
        head, _, rest = relpath.partition("/")
        mounted = self._mounts.get(head)
        if mounted is None:
            return posixpath.join(self.root, relpath)
        return posixpath.join(mounted, rest) if rest else mounted

    @property
    def canonical_url(self) -> str:
        """The root as an absolute URL (`file:///abs/path`, `s3://bucket/prefix`): the same run
        root gives the same string from any working directory, and different roots never collide."""
        return self.fs.unstrip_protocol(self.root)

    def url_of(self, relpath: str) -> str:
        """`relpath` as a URL other fsspec code can open (a plain path for local runs)."""
        head, _, rest = relpath.partition("/")
        mounted = self._mount_urls.get(head)
        if mounted is None:
            return f"{self.url.rstrip('/')}/{relpath}"
        return f"{mounted.rstrip('/')}/{rest}" if rest else mounted

    def exists(self, relpath: str) -> bool:
        return self.fs.exists(self.path(relpath))

    def size(self, relpath: str) -> int:
        return self.fs.info(self.path(relpath), refresh=True)["size"]

    def read_bytes(self, relpath: str) -> bytes:
        return self.fs.cat_file(self.path(relpath))

    def read_json(self, relpath: str) -> Any | None:
        """The JSON document at `relpath`, or None where there is none (a stage not yet committed)."""
        try:
            return json.loads(self.read_bytes(relpath))
        except FileNotFoundError:
            return None

    def open(self, relpath: str, mode: str = "rb"):
        return self.fs.open(self.path(relpath), mode)

    def list(self, reldir: str, suffix: str = "") -> list[str]:
        """Names (not paths) of the files directly under `reldir` ending in `suffix`; [] if absent."""
        try:
            entries = self.fs.ls(self.path(reldir), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = (posixpath.basename(entry.rstrip("/")) for entry in entries)
        return sorted(name for name in names if name.endswith(suffix))

    @contextmanager
    def atomic_writer(self, relpath: str) -> Iterator[HashingWriter]:
        """Open `relpath` for writing; it appears under its final name only if the block succeeds. A
        full disk is a `StorageFull` naming the output and the file, with nothing left behind."""
        final = self.path(relpath)
        with self._space_errors(relpath):
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            target = f"{final}.tmp-{uuid.uuid4().hex}" if self._local else final
            raw = self.fs.open(target, "wb")
        writer = HashingWriter(raw)
        with self._space_errors(relpath):
            try:
                yield writer
                failpoints.reach("storage.before_commit")
                raw.close()
                if self._local:
                    self.fs.mv(target, final)
                    return
            except BaseException:
                self._abandon(raw, target)
                raise
        stored = self.fs.info(final, refresh=True)["size"]
        if stored != writer.bytes:  # an upload cut short on its way must not pass for the file
            STORAGE_STATS.add("short_uploads")
            self.fs.rm(final)
            raise ShortUpload(
                f"{self.url_of(relpath)}: stored {stored} of {writer.bytes} bytes; removed it, to be written again"
            )

    @contextmanager
    def _space_errors(self, relpath: str) -> Iterator[None]:
        """A full disk or an exceeded quota, however deep in the exception chain, as one `StorageFull` line."""
        try:
            yield
        except Exception as error:
            if not _no_space(error):
                raise
            raise StorageFull(
                f"output {self.url} is full (no space left on its device) while writing {relpath}: free space there "
                "or point `output` elsewhere, then rerun; everything committed so far is kept"
            ) from None

    def _abandon(self, raw, target: str) -> None:
        """Drop a failed write. fsspec's buffered files upload on close() even after an error, so an
        object-store file is discarded instead (a multipart upload is aborted, the buffer never sent).
        A local file is removed even when closing it fails (on a full disk, its last flush does)."""
        if isinstance(raw, AbstractBufferedFile):
            raw.discard()
            raw.closed = True  # a later close() (or garbage collection) must not upload the rest
            return
        try:
            raw.close()
        except OSError:
            pass
        finally:
            if self.fs.exists(target):
                self.fs.rm(target)

    def write_bytes(self, relpath: str, data: bytes, attempts: int = 3) -> None:
        """Write `data` atomically; an upload found short is sent again (streams from
        `atomic_writer` cannot be replayed: their callers are retried whole, as shard tasks are)."""
        for attempt in range(attempts):
            try:
                with self.atomic_writer(relpath) as writer:
                    writer.write(data)
                return
            except ShortUpload:
                if attempt == attempts - 1:
                    raise

    def create_exclusive(self, relpath: str, data: bytes, attempts: int = 3) -> bool:
        """Write `data` to `relpath` only if nothing is there; whether this call created it. Atomic
        among writers: a local file is linked into place (which fails if the name exists), an S3 PUT
        carries `If-None-Match: *`, and an object stored short (an upload cut on its way) is removed
        and sent again, as `atomic_writer` does, so that no reader meets half a record."""
        final = self.path(relpath)
        if self._local:
            temp = f"{final}.claim-{uuid.uuid4().hex}"  # not a .tmp-: a lock holder sweeps those
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            try:
                with self._space_errors(relpath):
                    self.fs.pipe_file(temp, data)
                os.link(temp, final)
                return True
            except FileExistsError:
                return False
            finally:
                Path(temp).unlink(missing_ok=True)
        for _ in range(attempts):
            try:
                self.fs.pipe_file(final, data, mode="create")  # s3fs raises FileExistsError on 412
            except FileExistsError:
                return False
            if self.fs.info(final, refresh=True)["size"] == len(data):
                return True
            STORAGE_STATS.add("short_uploads")  # ours, but cut short on its way: remove it and try again
            with suppress(FileNotFoundError):  # a run that took it for a dead holder's removed it first
                self.fs.rm(final)
        raise ShortUpload(f"{self.url_of(relpath)}: stored short {attempts} times; removed it, to be written again")

    def sha256(self, relpath: str) -> str:
        with self.open(relpath) as stream:
            return HashingReader(stream).finish()

    def quarantine(self, relpaths: list[str]) -> str:
        """Move files (a shard's manifest first, which uncommits it, then its data) under
        `quarantine/<UTC time>/`, keeping their relative paths; returns that folder's URL."""
        folder = f"quarantine/{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
        for relpath in relpaths:
            if self.exists(relpath):
                self.fs.makedirs(posixpath.dirname(self.path(f"{folder}/{relpath}")), exist_ok=True)
                self.fs.mv(self.path(relpath), self.path(f"{folder}/{relpath}"))
        return self.url_of(folder)

    def sweep_temporaries(self) -> int:
        """Remove the temporary files of writes that never finished (a killed process's); only safe
        while holding the output's lock. Object stores have none: an upload is visible only whole."""
        if not self._local:
            return 0
        leftovers = [path for path in self.fs.find(self.root) if ".tmp-" in posixpath.basename(path)]
        for path in leftovers:
            self.fs.rm(path)
        return len(leftovers)

    def delete(self, relpath: str) -> None:
        try:
            self.fs.rm(self.path(relpath))
        except FileNotFoundError:
            pass

    def read_manifest(self, stage_dir: str, shard: str) -> Manifest | None:
        relpath = manifest_path(stage_dir, shard)
        try:
            text = self.read_bytes(relpath).decode("utf-8")
        except FileNotFoundError:
            return None
        try:
            return Manifest.from_json(text)
        except (ValueError, TypeError) as error:
            raise DataError(f"manifest {self.path(relpath)} is corrupt ({error}); delete it to redo {shard}") from None

    def write_manifest(self, stage_dir: str, manifest: Manifest) -> None:
        self.write_bytes(manifest_path(stage_dir, manifest.shard), manifest.to_json().encode("utf-8"))

    def write_index(self, stage_dir: str, name: str, manifests: Iterable[Manifest]) -> None:
        """Record committed manifests in one index object, for `committed_by_hash` to read at once."""
        self.write_bytes(index_path(stage_dir, name), index_to_json(manifests).encode("utf-8"))

    def committed_by_hash(self, stage_dir: str, config_hash: str) -> dict[str, Manifest]:
        """Every shard of `stage_dir` committed under `config_hash`, with its data file whole.

        One listing (names, sizes, times), the stage's few index objects, and one batched read of
        the manifests no index vouches for, which fsspec issues concurrently on object stores: for
        status over tens of thousands of shards.
        """
        try:
            entries = self.fs.ls(self.path(stage_dir), detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        listed = {posixpath.basename(entry["name"]): entry for entry in entries}
        manifests = self._indexed_manifests(entries, listed)
        unread = [
            entry["name"] for name, entry in listed.items() if name.endswith(MANIFEST_SUFFIX) and name not in manifests
        ]
        for blob in (self.fs.cat(unread, on_error="omit") if unread else {}).values():
            manifest = Manifest.from_json(blob.decode("utf-8"))
            manifests[posixpath.basename(manifest_path("", manifest.shard))] = manifest
        committed: dict[str, Manifest] = {}
        for manifest in manifests.values():
            data = listed.get(posixpath.basename(manifest.data_file))
            if manifest.matches(config_hash) and data is not None and data["size"] == manifest.bytes:
                committed[manifest.shard] = manifest
        return committed

    def _indexed_manifests(
        self, entries: list[dict[str, Any]], listed: dict[str, dict[str, Any]]
    ) -> dict[str, Manifest]:
        """Manifests (by file name) taken from the listed index objects, where the manifest file is
        listed, has the indexed manifest's exact size and was last written before the index was:
        a manifest rewritten since (a shard redone, or a config changed) is read from its file."""
        indexes = sorted(
            (e for e in entries if e["name"].endswith(INDEX_SUFFIX) and _modified(e) is not None), key=_modified
        )
        blobs = self.fs.cat([e["name"] for e in indexes], on_error="omit") if indexes else {}
        vouched: dict[str, Manifest] = {}
        for index in indexes:  # oldest first: a later index's copy wins
            written = _modified(index)
            for file_bytes, manifest in index_from_json(blobs.get(index["name"], b"").decode("utf-8", "replace")):
                name = posixpath.basename(manifest_path("", manifest.shard))
                entry = listed.get(name)
                if entry is None or entry["size"] != file_bytes:
                    continue
                changed = _modified(entry)
                if changed is not None and changed < written:
                    vouched[name] = manifest
        return vouched

    def committed(self, stage_dir: str, shard: str, config_hash: str, spec_hash: str) -> Manifest | None:
        """The shard's manifest if it matches this config and spec and its data file is whole."""
        manifest = self.read_manifest(stage_dir, shard)
        if manifest is None or not manifest.matches(config_hash, spec_hash):
            return None
        try:
            if self.size(manifest.data_file) != manifest.bytes:
                return None
        except FileNotFoundError:
            return None
        return manifest


def _modified(entry: dict[str, Any]) -> float | None:
    """Last-modified time of a listing entry in seconds (local: `mtime`; S3: `LastModified`), or None
    where the filesystem does not say (then no index is trusted and every manifest is read)."""
    value = entry.get("mtime", entry.get("LastModified"))
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else None
