"""The one owner of "committed?": `ensure` asks once per unit, takes a model's place only for work,
and is the same for a shard, the prompt table and a whole-run stage."""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from importlib import import_module

import pytest

from synthvision.core import failpoints
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


def stage_module(stage: str):
    return import_module(f"synthvision.stages.{stage}")


def test_a_shard_index_goes_with_a_per_shard_stage_only(tmp_path, colours_file):
    run = Run(tiny_config(tmp_path / "run", colours_file))
    with pytest.raises(ValueError, match="stage 'generate': a shard index expected"):
        ensure(run, "generate")
    with pytest.raises(ValueError, match="stage 'train': no index expected"):
        ensure(run, "train", 0)


@pytest.mark.parametrize("stage", ["generate", "score"])
def test_the_next_shard_s_model_starts_while_a_shard_s_tail_is_written(tmp_path, colours_file, monkeypatch, stage):
    """One model place (a semaphore, as one GPU slot), two shards in two threads: shard 0 stops right
    after giving the place back, before its tail is written, until shard 1 has taken the place; with
    the place held to the end (as before) shard 1 could never take it and the wait would time out."""
    run = Run(tiny_config(tmp_path / "run", colours_file))
    ensure(run, "prompts")
    if stage == "score":
        for index in (0, 1):
            ensure(run, "generate", index)
    place, taken_by_1 = threading.Semaphore(1), threading.Event()
    events: list[str] = []

    @contextmanager
    def slot(index: int):
        with place:
            events.append(f"take {index}")
            if index == 1:
                taken_by_1.set()
            yield
            events.append(f"give back {index}")

    real_reach = failpoints.reach

    def reach(point: str) -> None:
        if point == f"{stage}.after_model" and threading.current_thread().name == "shard-0":
            assert stage_module(stage).committed(run, 0) is None  # the tail is still to be written
            assert taken_by_1.wait(timeout=60), "shard 1 never got the model's place"
        real_reach(point)

    monkeypatch.setattr(failpoints, "reach", reach)
    outcomes: dict[int, object] = {}

    def work(index: int) -> None:
        try:
            outcomes[index] = ensure(run, stage, index, slot=lambda: slot(index))
        except BaseException as error:  # shown by the assertion below
            outcomes[index] = error

    first = threading.Thread(target=work, args=(0,), name="shard-0")
    first.start()
    while "take 0" not in events:
        time.sleep(0.01)
    second = threading.Thread(target=work, args=(1,), name="shard-1")
    second.start()
    first.join(timeout=120), second.join(timeout=120)
    assert not [o for o in outcomes.values() if isinstance(o, BaseException)], outcomes
    assert [outcomes[i][1] for i in (0, 1)] == [True, True]
    assert events[:3] == ["take 0", "give back 0", "take 1"]
    assert stage_module(stage).committed(run, 0) is not None and stage_module(stage).committed(run, 1) is not None
