"""Quota mode's record of its top-up rounds: `shards/top-ups/round-0001.json`, one file per round.

A round's file says how many more images each class gets and from what signal, and is written
before the round's first shard: it is what makes the round's shards part of the plan
(`ShardPlan.top_ups`), so a run killed anywhere in a round resumes that round as recorded instead
of deciding it again. It lives in the generate stage's folder (shared with every run that shares
the shards) and names the generate stage hash that recorded it: a round of another config is never
read as this one's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from synthvision.core.stage_table import stage
from synthvision.storage.store import Storage

TOP_UPS_DIR = f"{stage('generate').folder}/top-ups"


@dataclass(frozen=True)
class TopUpRound:
    number: int  # 1 for the first top-up (round 0 is the plan's images_per_class)
    config_hash: str  # the generate stage hash of the run that recorded it
    images: tuple[int, ...]  # more images per class id
    passed: tuple[int, ...]  # the signal: images passing CF per class before this round
    generated: tuple[int, ...]  # images generated per class before this round
    policy: str = "quota"  # `shards.top_up.policy`
    weakness: tuple[float, ...] = ()  # adaptive: the weights its images were split by
    signal: str = ""  # adaptive: what the weakness measured (`shards.top_up.signal`)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TopUpRound:
        data = json.loads(text)
        return cls(**{**data, **{key: tuple(data[key]) for key in ("images", "passed", "generated", "weakness")}})


def round_path(number: int) -> str:
    return f"{TOP_UPS_DIR}/round-{number:04d}.json"


def read_rounds(storage: Storage, config_hash: str) -> tuple[TopUpRound, ...]:
    """The rounds this config recorded, in order: round 1, 2, ... up to the first one missing or
    recorded by another config (a later round is not this config's plan without its predecessors)."""
    rounds: list[TopUpRound] = []
    for name in storage.list(TOP_UPS_DIR, ".json"):
        record = TopUpRound.from_json(storage.read_bytes(f"{TOP_UPS_DIR}/{name}").decode("utf-8"))
        if record.number != len(rounds) + 1 or record.config_hash != config_hash:
            break
        rounds.append(record)
    return tuple(rounds)


def record_round(storage: Storage, top_up: TopUpRound) -> None:
    """Write a round's record (atomically): from now on its shards are planned."""
    storage.write_bytes(round_path(top_up.number), top_up.to_json().encode("utf-8"))
