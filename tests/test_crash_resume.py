"""Kill the pipeline process for real (SIGKILL) part-way through generation, then rerun it; on local
disk and on a real S3 API (moto_server on loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest
import yaml

from flows.synthesize import synthesize
from synthvision.config import load_config
from synthvision.run import open_run
from synthvision.storage import Storage
from tests.conftest import REPO
from tests.helpers import ModelCounter

SHARDS, SHARD_SIZE = 12, 2


def committed_manifests(storage: Storage) -> dict[str, bytes]:
    return {name: storage.read_bytes(f"shards/{name}") for name in storage.list("shards", ".manifest.json")}


def tar_members(storage: Storage, relpath: str) -> list[str]:
    with storage.open(relpath) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        return [member.name for member in tar]


@pytest.mark.slow
def test_killed_generation_resumes_with_every_key_exactly_once(output, tmp_path, colours_file, prefect_server, monkeypatch):
    url, options = output
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "run_name": "crash",
                "output": url,
                "storage_options": options,
                "label_space": str(colours_file),
                "generator": {"backend": "tiny", "steps": 12, "resolution": 32, "batch_size": 2},
                "shards": {"images_per_class": SHARDS * SHARD_SIZE // 3, "shard_size": SHARD_SIZE},
                "clip": {"model": "tiny"},
                "training": {"epochs": 2},
                # No GPU limit: the killed process's slot would stay leased until its lease (>= 60 s)
                # lapses (test_engines covers the limit), and on SQLite each slot costs ~1.4 s.
                "orchestration": {"max_workers": 1, "retry_delay_s": 0, "gpu_limit": None},
            }
        )
    )
    storage = Storage(url, options)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config_path)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(committed_manifests(storage)) < 2:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "generation never committed a shard"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    before = committed_manifests(storage)
    assert 2 <= len(before) < SHARDS, "the kill must land part-way through generation"
    for name in storage.list("shards", ".tar"):  # whatever is visible under a final name is a whole tar
        assert len(tar_members(storage, f"shards/{name}")) == 3 * SHARD_SIZE

    config = load_config(config_path)
    counter = ModelCounter(monkeypatch)
    result = synthesize(config)

    assert counter.images == (SHARDS - len(before)) * SHARD_SIZE  # committed shards were not regenerated
    assert result["stages"]["generate"]["done_now"] == SHARDS - len(before)
    after = committed_manifests(storage)
    assert {name: after[name] for name in before} == before
    run = open_run(config)
    keys = []
    for index in range(run.plan.num_shards):
        keys += sorted({name.split(".")[0] for name in tar_members(storage, f"shards/{run.plan.shard(index).name}.tar")})
    planned = [sample.key for index in range(run.plan.num_shards) for sample in run.plan.shard(index).samples]
    assert keys == planned and len(set(keys)) == SHARDS * SHARD_SIZE
