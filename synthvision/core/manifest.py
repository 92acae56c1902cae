"""Shard manifests: the commit record of one shard of one stage (pure: JSON in, JSON out).

A stage writes its data file first and its manifest last. Readers trust only data that a matching
manifest vouches for: a data file without one (a kill between the two writes) is an uncommitted
leftover that the next run overwrites from scratch.

A wave index (`shards/wave-0003.index.json`) is a copy of the manifests a wave of the flow
committed, written when the wave ends, so that `status` over 10,000 shards on an object store reads
a few index objects instead of one manifest per shard. It is only a cache: a reader takes a manifest
from an index only while the manifest file is listed, unchanged in size and older than the index
(see `Storage.committed_by_hash`), and reads the manifest itself otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    shard: str
    stage: str  # "generate" or "score"
    config_hash: str  # the stage hash of the config that wrote it
    spec_hash: str  # what exactly it holds: the shard spec, or for scores the source tar's sha256
    data_file: str  # path of the data file relative to the run root
    count: int  # samples written
    bytes: int
    sha256: str
    timings: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> samples dropped or flagged
    models: dict[str, str] = field(default_factory=dict)  # role -> the model that made it (`models.lineage`)
    # scores: per class id, images "scored", "passed" (CF) and the sum of their CF "confidence" in
    # their class, so top-up rounds are decided from the manifests alone
    per_class: dict[str, list[float]] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    version: int = MANIFEST_VERSION

    def matches(self, config_hash: str, spec_hash: str | None = None) -> bool:
        """Written by this manifest format and config; and for exactly `spec_hash`, when given."""
        return (
            self.version == MANIFEST_VERSION and self.config_hash == config_hash and spec_hash in (None, self.spec_hash)
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))


MANIFEST_SUFFIX = ".manifest.json"
INDEX_SUFFIX = ".index.json"


def manifest_path(stage_dir: str, shard: str) -> str:
    return f"{stage_dir}/{shard}{MANIFEST_SUFFIX}"


def index_path(stage_dir: str, name: str) -> str:
    return f"{stage_dir}/{name}{INDEX_SUFFIX}"


def index_to_json(manifests: Iterable[Manifest]) -> str:
    """Each manifest with the size of its own file, so a reader can tell a rewritten manifest apart."""
    entries = [{"file_bytes": len(m.to_json().encode("utf-8")), "manifest": asdict(m)} for m in manifests]
    return json.dumps({"version": MANIFEST_VERSION, "manifests": entries}, sort_keys=True)


def index_from_json(text: str) -> list[tuple[int, Manifest]]:
    """(manifest file size, manifest) per entry; [] for an index this code cannot read (it is only a cache)."""
    try:
        index = json.loads(text)
        if index["version"] != MANIFEST_VERSION:
            return []
        return [(int(entry["file_bytes"]), Manifest(**entry["manifest"])) for entry in index["manifests"]]
    except (ValueError, TypeError, KeyError):
        return []
