"""Runs that share stages (`shared_stages`): a stage's folder lives under its hash, outside the run's
own output, and runs that agree on the hash read and write the same folder."""

from __future__ import annotations

import pytest

from synthvision.core.errors import DataError
from synthvision.run import Run
from synthvision.storage.store import Storage


def test_a_mounted_name_is_read_and_written_in_its_own_folder(tmp_path):
    storage = Storage(str(tmp_path / "run"), mounts={"shards": str(tmp_path / "shared" / "abc" / "shards")})
    storage.write_bytes("shards/00000.tar", b"tar")
    storage.write_bytes("train/report.json", b"{}")
    assert (tmp_path / "shared" / "abc" / "shards" / "00000.tar").read_bytes() == b"tar"
    assert (tmp_path / "run" / "train" / "report.json").exists()
    assert not (tmp_path / "run" / "shards").exists()
    assert storage.list("shards") == ["00000.tar"] and storage.exists("shards/00000.tar")
    assert storage.url_of("shards/00000.tar") == str(tmp_path / "shared" / "abc" / "shards" / "00000.tar")
    assert storage.url_of("shardsx/1") == f"{tmp_path / 'run'}/shardsx/1"  # a name, not a prefix


def test_a_mount_on_another_storage_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"s3://bucket/shared \(shared outputs\) is not on the same storage"):
        Storage(str(tmp_path / "run"), mounts={"shards": "s3://bucket/shared"}, storage_options={"anon": True})


def test_runs_agreeing_on_a_stage_hash_share_its_folder_and_no_other(make_config, tmp_path):
    shared = str(tmp_path / "stages")
    first = Run(make_config(tmp_path / "a", shared_stages=shared))
    slower = Run(make_config(tmp_path / "b", shared_stages=shared, training={"lr": 1e-4}))
    other_seed = Run(make_config(tmp_path / "c", shared_stages=shared, seed=1))
    for name in ("prompts.parquet", "shards/x.tar", "scores/x.npz"):
        assert first.storage.path(name) == slower.storage.path(name)
        assert first.storage.path(name) != other_seed.storage.path(name)
    assert first.storage.path("train/report.json") != slower.storage.path("train/report.json")
    assert first.storage.path("shards") == f"{shared}/generate/{first.hashes['generate']}/shards"
    assert first.storage.path("run.json") == str(tmp_path / "a" / "run.json")  # what is the run's own stays home


def test_without_shared_stages_everything_is_under_the_output(make_config, tmp_path):
    run = Run(make_config(tmp_path / "a"))
    assert run.storage.path("shards/x.tar") == str(tmp_path / "a" / "shards" / "x.tar")
    assert run.storage.path("prompts.parquet") == str(tmp_path / "a" / "prompts.parquet")
