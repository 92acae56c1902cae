"""The one owner of "committed?": `ensure` asks once per unit, takes a model's place only for work,
and is the same for a shard, the prompt table and a whole-run stage."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import pytest

from synthvision.run import Run
from synthvision.stages import generate
from synthvision.stages.units import ensure
from synthvision.storage.store import Storage
from tests.conftest import tiny_config


def test_a_unit_is_asked_once_and_its_slot_taken_only_for_work(tmp_path, colours_file, monkeypatch):
    run = Run(tiny_config(tmp_path / "run", colours_file))
    slots: list[str] = []

    @contextmanager
    def slot():
        slots.append("taken")
        yield

    reads: Counter[str] = Counter()
    real = Storage.read_manifest
    monkeypatch.setattr(Storage, "read_manifest", lambda self, d, s: reads.update([f"{d}/{s}"]) or real(self, d, s))
    table, now = ensure(run, "prompts", slot=slot)
    assert now and len(table) == len(run.label_space.classes) and slots == ["taken"]
    assert ensure(run, "prompts", slot=slot) == (table, False) and slots == ["taken"]

    manifest, now = ensure(run, "generate", 1, slot=slot)
    assert now and manifest.shard == "shard-00001" and slots == ["taken"] * 2
    assert reads == {"shards/shard-00001": 1}  # asked once; the stage function did not ask again
    worked: list[int] = []
    monkeypatch.setattr(generate, "generate", lambda run, index: worked.append(index))  # looked up at the call
    assert ensure(run, "generate", 1, slot=slot) == (manifest, False)
    assert worked == [] and slots == ["taken"] * 2 and reads == {"shards/shard-00001": 2}
    assert ensure(run, "generate", 0, slot=slot) == (None, True) and worked == [0]


def test_a_shard_index_goes_with_a_per_shard_stage_only(tmp_path, colours_file):
    run = Run(tiny_config(tmp_path / "run", colours_file))
    with pytest.raises(ValueError, match="stage 'generate': a shard index expected"):
        ensure(run, "generate")
    with pytest.raises(ValueError, match="stage 'train': no index expected"):
        ensure(run, "train", 0)
