"""Shard manifests: the commit record of one shard of one stage (pure: JSON in, JSON out).

A stage writes its data file first and its manifest last. Readers trust only data that a matching
manifest vouches for: a data file without one (a kill between the two writes) is an uncommitted
leftover that the next run overwrites from scratch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

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
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    version: int = MANIFEST_VERSION

    def matches(self, config_hash: str, spec_hash: str | None = None) -> bool:
        """Written by this manifest format and config; and for exactly `spec_hash`, when given."""
        return self.version == MANIFEST_VERSION and self.config_hash == config_hash and spec_hash in (None, self.spec_hash)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))


MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(stage_dir: str, shard: str) -> str:
    return f"{stage_dir}/{shard}{MANIFEST_SUFFIX}"
