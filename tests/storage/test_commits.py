"""What "committed" means, by its one convention: a unit's record, written last, names the stage hash of the
config that wrote it and vouches for whole data; anything else is not committed."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from synthvision.core.errors import DataError
from synthvision.core.manifest import Manifest
from synthvision.core.prompts import Prompt
from synthvision.storage.commits import Commits, every
from synthvision.storage.prompt_table import write_prompts
from synthvision.storage.store import Storage

HASHES = {"prompts": "p1", "generate": "g1", "score": "s1", "quality": "q1"}


def manifest(shard: str = "shard-00000", data: bytes = b"tar bytes", **fields) -> Manifest:
    return Manifest(
        shard=shard,
        stage="generate",
        config_hash="g1",
        spec_hash="spec-a",
        data_file=f"shards/{shard}.tar",
        count=2,
        bytes=len(data),
        sha256="not checked here",
        **fields,
    )


@pytest.fixture
def commits(tmp_path) -> Commits:
    return Commits(Storage(str(tmp_path / "run")), HASHES)


def test_a_shard_is_committed_by_its_manifest_for_this_config_spec_and_whole_data(commits):
    storage = commits.storage
    storage.write_bytes("shards/shard-00000.tar", b"tar bytes")
    assert commits.shard("generate", "shard-00000", "spec-a") is None  # data without its record: a leftover
    commits.commit_shard(manifest())
    assert commits.shard("generate", "shard-00000", "spec-a") == Manifest.from_json(
        storage.read_bytes("shards/shard-00000.manifest.json").decode()
    )
    assert commits.shard("generate", "shard-00000", "spec-a").spec_hash == "spec-a"
    assert commits.shard("generate", "shard-00000", "spec-b") is None  # another spec: not this shard
    assert Commits(storage, {**HASHES, "generate": "g2"}).shard("generate", "shard-00000", "spec-a") is None
    storage.write_bytes("shards/shard-00000.tar", b"tar by")  # cut short
    assert commits.shard("generate", "shard-00000", "spec-a") is None
    assert commits.shards("generate") == {}
    storage.write_bytes("shards/shard-00000.tar", b"tar bytes")
    assert list(commits.shards("generate")) == ["shard-00000"]


def test_a_wave_index_lists_what_it_committed(commits):
    commits.storage.write_bytes("shards/shard-00001.tar", b"xyz")
    one = manifest("shard-00001", b"xyz")
    commits.commit_shard(one)
    commits.index("generate", 3, [one])
    assert "shard-00001" in commits.storage.read_bytes("shards/wave-0003.index.json").decode()
    assert commits.shards("generate") == {"shard-00001": one}


@dataclass
class Report:
    config_hash: str
    rows: list[int]


def test_a_report_commits_its_stage_typed_and_after_its_markdown(commits):
    assert commits.report("quality", Report) is None and not commits.has_report("quality")
    commits.commit_report("quality", Report("q1", [1, 2]), markdown="# quality\n")
    assert commits.report("quality", Report) == Report("q1", [1, 2]) and commits.has_report("quality")
    assert commits.storage.read_bytes("quality/report.md") == b"# quality\n"
    assert Commits(commits.storage, {**HASHES, "quality": "q2"}).report("quality", Report) is None


def test_a_report_records_the_seconds_since_its_work_began_where_that_is_known(commits, monkeypatch):
    clock = iter([112.5])
    monkeypatch.setattr("synthvision.storage.commits.time.monotonic", lambda: next(clock))
    commits.started["quality"] = 100.0
    commits.commit_report("quality", Report("q1", [1]))
    assert json.loads(commits.storage.read_bytes("quality/report.json"))["busy_s"] == 12.5
    assert commits.report("quality", Report) == Report("q1", [1]) and "quality" not in commits.started
    commits.commit_report("quality", Report("q1", [2]))  # nothing began it (a test, a tool): no timing
    assert "busy_s" not in json.loads(commits.storage.read_bytes("quality/report.json"))


def test_the_prompt_table_is_committed_for_its_config_only(commits):
    table = [Prompt(prompt_id=0, class_id=0, class_name="red", text="a photo of a red.", source="basic")]
    assert commits.prompts() is None
    write_prompts(commits.storage, table, "p1")
    assert commits.prompts() == table
    assert Commits(commits.storage, {**HASHES, "prompts": "p2"}).prompts() is None


def test_every_names_the_first_missing_shard_and_the_stage_to_run():
    found = manifest()
    assert every(iter([("shard-00000", found)]), "are not generated", "generate") == [found]
    with pytest.raises(
        DataError, match=r"^2 shard\(s\) are not scored \(first: shard-00001\): run the score stage first$"
    ):
        every(iter([("shard-00000", found), ("shard-00001", None), ("shard-00002", None)]), "are not scored", "score")
