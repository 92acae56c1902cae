import pytest

from synthvision.core.manifest import Manifest
from synthvision.storage.store import Storage


def manifest(**changes) -> Manifest:
    fields = dict(
        shard="shard-00000",
        stage="generate",
        config_hash="c",
        spec_hash="s",
        data_file="shards/shard-00000.tar",
        count=1,
        bytes=3,
        sha256="x",
    )
    return Manifest(**{**fields, **changes})


@pytest.mark.parametrize("url_kind", ["local", "memory"])
def test_atomic_writer_commits_only_on_success(tmp_path, url_kind):
    storage = Storage(str(tmp_path / "run") if url_kind == "local" else f"memory://{tmp_path.name}")
    with pytest.raises(RuntimeError):
        with storage.atomic_writer("shards/a.tar") as writer:
            writer.write(b"half")
            raise RuntimeError("killed mid-write")
    assert storage.list("shards") == []
    with storage.atomic_writer("shards/a.tar") as writer:
        writer.write(b"abc")
    assert storage.read_bytes("shards/a.tar") == b"abc"
    assert (writer.bytes, writer.sha256[:8]) == (3, "ba7816bf")  # sha256("abc")
    assert storage.list("shards") == ["a.tar"]


def test_committed_requires_matching_manifest_and_whole_data(tmp_path):
    storage = Storage(str(tmp_path))
    assert storage.committed("shards", "shard-00000", "c", "s") is None
    storage.write_bytes("shards/shard-00000.tar", b"abc")
    storage.write_manifest("shards", manifest())
    assert storage.committed("shards", "shard-00000", "c", "s") == manifest(
        created_at=storage.read_manifest("shards", "shard-00000").created_at
    )
    assert storage.committed("shards", "shard-00000", "other-config", "s") is None
    assert storage.committed("shards", "shard-00000", "c", "other-spec") is None
    storage.write_bytes("shards/shard-00000.tar", b"abcd")  # data replaced after the commit
    assert storage.committed("shards", "shard-00000", "c", "s") is None


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    from synthvision.core.errors import DataError

    storage = Storage(str(tmp_path))
    storage.write_bytes("shards/shard-00000.manifest.json", b"{not json")
    with pytest.raises(DataError, match="shard-00000.manifest.json is corrupt"):
        storage.read_manifest("shards", "shard-00000")


def test_committed_by_hash_lists_whole_shards_of_one_config(tmp_path):
    storage = Storage(str(tmp_path))
    for name, config_hash, data, claimed in [
        ("shard-00000", "c", b"abc", 3),  # committed
        ("shard-00001", "other", b"abc", 3),  # another config's
        ("shard-00002", "c", b"ab", 3),  # data truncated after the commit
    ]:
        storage.write_bytes(f"shards/{name}.tar", data)
        storage.write_manifest(
            "shards", manifest(shard=name, config_hash=config_hash, data_file=f"shards/{name}.tar", bytes=claimed)
        )
    storage.write_bytes("shards/shard-00003.tar", b"abc")  # no manifest at all
    assert list(storage.committed_by_hash("shards", "c")) == ["shard-00000"]
    assert storage.committed_by_hash("nothing-here", "c") == {}
    storage.write_bytes("only-data/shard-00000.tar", b"abc")
    assert storage.committed_by_hash("only-data", "c") == {}


def test_committed_by_hash_ignores_manifests_of_another_format_version(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_bytes("shards/shard-00000.tar", b"abc")
    storage.write_manifest("shards", manifest(version=0))
    assert storage.committed_by_hash("shards", "c") == {}
    assert storage.committed("shards", "shard-00000", "c", "s") is None


def _commit(storage: Storage, name: str, config_hash: str = "c") -> Manifest:
    storage.write_bytes(f"shards/{name}.tar", b"abc")
    committed = manifest(shard=name, config_hash=config_hash, data_file=f"shards/{name}.tar")
    storage.write_manifest("shards", committed)
    return committed


def _set_mtime(storage: Storage, relpath: str, seconds: float) -> None:
    import os

    os.utime(storage.path(relpath), (seconds, seconds))


def _manifest_reads(storage: Storage, monkeypatch) -> list[str]:
    """Paths of manifest files `committed_by_hash` reads from here on."""
    reads: list[str] = []
    cat = storage.fs.cat

    def recording_cat(paths, **kwargs):
        reads.extend(p for p in paths if p.endswith(".manifest.json"))
        return cat(paths, **kwargs)

    monkeypatch.setattr(storage.fs, "cat", recording_cat)
    return reads


def _indexed_wave(storage: Storage, shards: int) -> list[Manifest]:
    """`shards` committed shards whose manifests were written (at t = 1000 s) before the wave's index."""
    manifests = [_commit(storage, f"shard-0000{i}") for i in range(shards)]
    for i in range(shards):
        _set_mtime(storage, f"shards/shard-0000{i}.manifest.json", 1_000)
    storage.write_index("shards", "wave-0000", manifests)
    return manifests


def test_wave_index_stands_in_for_manifests_it_vouches_for(tmp_path, monkeypatch):
    storage = Storage(str(tmp_path))
    manifests = _indexed_wave(storage, 3)
    reads = _manifest_reads(storage, monkeypatch)
    assert storage.committed_by_hash("shards", "c") == {m.shard: m for m in manifests}
    assert reads == []  # all three came from the index


def test_wave_index_never_outvotes_the_manifest_files(tmp_path, monkeypatch):
    storage = Storage(str(tmp_path))
    _indexed_wave(storage, 5)
    _set_mtime(storage, "shards/wave-0000.index.json", 2_000)
    # shard 0: redone under another config after the index was written
    _commit(storage, "shard-00000", config_hash="d")
    _set_mtime(storage, "shards/shard-00000.manifest.json", 3_000)
    # shard 1: manifest deleted (a reader must not trust its tar any more)
    storage.fs.rm(storage.path("shards/shard-00001.manifest.json"))
    # shard 2: data truncated after the commit
    storage.write_bytes("shards/shard-00002.tar", b"ab")
    # shard 3: manifest rewritten, backdated, but not the size the index recorded
    storage.write_manifest(
        "shards", manifest(shard="shard-00003", config_hash="cc", data_file="shards/shard-00003.tar")
    )
    _set_mtime(storage, "shards/shard-00003.manifest.json", 1_000)
    reads = _manifest_reads(storage, monkeypatch)
    assert sorted(storage.committed_by_hash("shards", "c")) == ["shard-00004"]
    assert sorted(storage.committed_by_hash("shards", "d")) == ["shard-00000"]
    assert (
        sorted(p.rsplit("/", 1)[-1] for p in reads)
        == ["shard-00000.manifest.json"] * 2 + ["shard-00003.manifest.json"] * 2
    )


def test_unreadable_wave_index_falls_back_to_the_manifests(tmp_path, monkeypatch):
    storage = Storage(str(tmp_path))
    manifests = [_commit(storage, f"shard-0000{i}") for i in range(2)]
    storage.write_bytes("shards/wave-0000.index.json", b"[{truncated")
    storage.write_bytes("shards/wave-0001.index.json", b'{"version": 99, "manifests": [{"from": "a future format"}]}')
    reads = _manifest_reads(storage, monkeypatch)
    assert storage.committed_by_hash("shards", "c") == {m.shard: m for m in manifests}
    assert len(reads) == 2
