"""Is it done? The one owner of that question, for every unit of work of a run.

One convention everywhere: a unit's *commit record* is written last, after its data, and names the
stage hash of the config that wrote it under `config_hash`. A unit is committed when its record
exists, names this config's stage hash, and vouches for data that is whole:

| unit                        | commit record                         | also vouches for                     |
|-----------------------------|---------------------------------------|--------------------------------------|
| a generate or score shard   | `<folder>/<shard>.manifest.json`      | its spec (`spec_hash`), data size    |
| the prompt table            | `prompts.parquet`'s schema metadata   | (the file is written atomically)     |
| a whole-run stage           | `<folder>/report.json`                | the stage's other files, written first |
| a training job's resume point | `<job>/ckpt/latest.json`            | the checkpoint it names              |

`stages/units.ensure` asks once per unit; the stage function it then calls does the work without
asking again. Outcomes are typed: a shard's `ShardOutcome`, a stage's report dataclass (read back through
pydantic, so a report on storage and a report in memory are the same object).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from pydantic import TypeAdapter

from synthvision.core.errors import DataError
from synthvision.core.manifest import Manifest
from synthvision.core.prompts import Prompt
from synthvision.core.stage_table import stage
from synthvision.storage.prompt_table import read_prompts
from synthvision.storage.store import Storage

Report = TypeVar("Report")


@dataclass(frozen=True)
class ShardOutcome:
    """What became of one shard in one task run."""

    shard: str
    manifest: Manifest | None  # the committed manifest; None when the input shard was quarantined
    done_now: bool = False  # computed in this task run (else found committed)
    quarantined: str | None = None  # why the input shard was moved aside (it is generated again)
    attempts: int = 1  # > 1 when the orchestrator retried the shard after a fault
    device: str = "-"  # where it held its model slot ("-": it needed none)
    slot_start: float | None = None
    slot_end: float | None = None


class Commits:
    """Answers "committed?" for a run's units from storage alone (no model, no Prefect)."""

    def __init__(self, storage: Storage, hashes: Mapping[str, str]):
        self.storage = storage
        self.hashes = hashes
        # whole-run stage -> when its work began (`stages.units.ensure`), so that its report records
        # the seconds it took (`busy_s`, as a shard's manifest records `total_s`) for an experiment's cost
        self.started: dict[str, float] = {}

    def shard(self, stage_name: str, shard: str, spec_hash: str) -> Manifest | None:
        """The shard's manifest if it names this config's stage hash and `spec_hash`, and its data is whole."""
        return self.storage.committed(stage(stage_name).folder, shard, self.hashes[stage_name], spec_hash)

    def shards(self, stage_name: str) -> dict[str, Manifest]:
        """Every committed shard of a stage, by name, in one listing (for `status` at any scale)."""
        return self.storage.committed_by_hash(stage(stage_name).folder, self.hashes[stage_name])

    def commit_shard(self, manifest: Manifest) -> None:
        """Write a shard's manifest: the last write of the shard, which commits it."""
        self.storage.write_manifest(stage(manifest.stage).folder, manifest)

    def index(self, stage_name: str, wave: int, manifests: list[Manifest]) -> None:
        """Index the manifests a wave committed, so `status` need not read them one by one."""
        self.storage.write_index(stage(stage_name).folder, f"wave-{wave:04d}", sorted(manifests, key=lambda m: m.shard))

    def prompts(self) -> list[Prompt] | None:
        """The prompt table, if this config wrote it."""
        return read_prompts(self.storage, self.hashes["prompts"])

    def report(self, stage_name: str, kind: type[Report]) -> Report | None:
        """A whole-run stage's committed report, typed; None if there is none of this config."""
        record = self.report_record(stage_name)
        return None if record is None else TypeAdapter(kind).validate_python(record)

    def has_report(self, stage_name: str) -> bool:
        return self.report_record(stage_name) is not None

    def report_record(self, stage_name: str) -> dict[str, Any] | None:
        record = self.storage.read_json(stage(stage_name).report_file)
        return record if record is not None and record.get("config_hash") == self.hashes[stage_name] else None

    def commit_report(self, stage_name: str, report: Any, markdown: str | None = None) -> None:
        """Write a stage's report (and its rendering for people first): the report commits the stage.
        The record holds `busy_s`, the seconds since its work began, where `started` knows it."""
        folder = stage(stage_name).folder
        if markdown is not None:
            self.storage.write_bytes(f"{folder}/report.md", markdown.encode("utf-8"))
        record = asdict(report)
        began = self.started.pop(stage_name, None)
        if began is not None:
            record["busy_s"] = round(time.monotonic() - began, 3)
        self.storage.write_bytes(stage(stage_name).report_file, json.dumps(record, indent=1).encode("utf-8"))


def every(manifests: Iterator[tuple[str, Manifest | None]], problem: str, upstream: str) -> list[Manifest]:
    """Every `(shard, manifest)`'s manifest; an error naming the first shard without one and the
    stage to run for it."""
    pairs = list(manifests)
    found = [manifest for _, manifest in pairs if manifest is not None]
    missing = [name for name, manifest in pairs if manifest is None]
    if missing:
        raise DataError(f"{len(missing)} shard(s) {problem} (first: {missing[0]}): run the {upstream} stage first")
    return found
