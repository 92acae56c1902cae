"""The pipeline against a real S3 API (moto_server on loopback): S3 has no rename, so a shard is the
tar uploaded under its final name, then the manifest; a failed upload must leave nothing behind."""

from __future__ import annotations

import json
import time

import pytest

from flows.synthesize import synthesize
from synthvision.core.errors import ConfigError
from synthvision.core.manifest import index_from_json
from synthvision.run import open_run
from synthvision.storage.store import ShortUpload, Storage
from tests.conftest import FAKE_KEY_ID, FAKE_SECRET
from tests.reliability.fault_proxy import FaultProxy

pytestmark = pytest.mark.slow


def test_failed_upload_leaves_no_object(s3_bucket, monkeypatch):
    url, options = s3_bucket
    storage = Storage(f"{url}/run", options)

    def no_cleanup_needed(path, *args, **kwargs):
        raise AssertionError(f"a partial object was uploaded to {path} and had to be deleted")

    monkeypatch.setattr(storage.fs, "rm", no_cleanup_needed)
    for size in (10, 12 * 2**20):  # a single PUT, and a multipart upload (parts of 5 MiB)
        with pytest.raises(RuntimeError):
            with storage.atomic_writer("shards/a.tar") as writer:
                writer.write(b"x" * size)
                raise RuntimeError("killed mid-upload")
        assert storage.list("shards") == []
    with storage.atomic_writer("shards/a.tar") as writer:
        writer.write(b"abc")
    assert storage.read_bytes("shards/a.tar") == b"abc" and storage.size("shards/a.tar") == 3


def test_an_exclusive_create_cut_short_on_its_way_is_sent_again(s3_endpoint, s3_bucket):
    """The lock's record: S3 (here moto behind a proxy that halves the first upload) may store a PUT
    short; no reader may then meet half a record."""
    url, _ = s3_bucket
    record = json.dumps({"token": "t" * 32, "heartbeat": time.time()}).encode()
    proxy = FaultProxy(s3_endpoint, rate=0, seed=0, script=("truncated_upload",))
    try:
        storage = Storage(f"{url}/run", {"endpoint_url": proxy.url})
        assert storage.create_exclusive("lock.json", record)
        assert proxy.faults == {"truncated_upload": 1}
        assert storage.read_bytes("lock.json") == record
        assert not storage.create_exclusive("lock.json", b"{}")  # still exclusive
        proxy.script = ["truncated_upload"] * 3
        with pytest.raises(ShortUpload, match="lock2.json: stored short 3 times"):
            storage.create_exclusive("lock2.json", record)
        assert not storage.exists("lock2.json")
    finally:
        proxy.close()


def test_end_to_end_on_s3_with_no_credentials_in_any_output(s3_bucket, make_config, prefect_server, monkeypatch):
    url, options = s3_bucket
    config = make_config(run_name="s3", output=f"{url}/run", storage_options=options)
    result = synthesize(config)
    assert result.report.evaluation.test_images == 9
    run = open_run(config)
    assert run.storage.canonical_url == f"{url}/run"
    assert [row.missing for row in run.status()] == [0, 0, 0, 0]
    assert synthesize(config).stages["generate"].done_now == 0
    _status_reads_wave_indexes_not_manifests(run, monkeypatch)

    outputs = run.storage.fs.find(run.storage.root)
    assert any(path.endswith("train/report.md") for path in outputs)
    for path in outputs:
        data = run.storage.fs.cat_file(path)
        assert FAKE_SECRET.encode() not in data and FAKE_KEY_ID.encode() not in data, path


def _status_reads_wave_indexes_not_manifests(run, monkeypatch) -> None:
    """Each wave indexed what it committed; S3's listing times (whole seconds) let status trust an
    index for the manifests written before it, so status makes no request per shard."""
    stages = {"shards": "generate", "scores": "score"}
    for stage_dir in stages:
        indexed = [
            m.shard for _, m in index_from_json(run.storage.read_bytes(f"{stage_dir}/wave-0000.index.json").decode())
        ]
        assert indexed == [run.plan.shard(i).name for i in range(run.plan.num_shards)]
    time.sleep(1.1)  # the flow wrote its indexes within the second of the last manifests: re-index after it
    for stage in stages.values():
        run.commits.index(stage, 0, list(run.commits.shards(stage).values()))
    reads, cat = [], run.storage.fs.cat
    monkeypatch.setattr(run.storage.fs, "cat", lambda paths, **kwargs: reads.extend(paths) or cat(paths, **kwargs))
    assert [row.missing for row in run.status()] == [0, 0, 0, 0]
    assert reads and not [path for path in reads if path.endswith(".manifest.json")]


def test_credentials_in_storage_options_are_refused(make_config):
    with pytest.raises(ConfigError, match="'secret' looks like a credential: set it in the environment"):
        make_config(storage_options={"client_kwargs": {"secret": "x"}})
