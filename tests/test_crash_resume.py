"""Kill the pipeline process for real (SIGKILL) part-way through generation, then rerun it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from flows.synthesize import synthesize
from synthvision.config import load_config
from synthvision.run import open_run
from tests.conftest import REPO
from tests.helpers import ModelCounter

SHARDS, SHARD_SIZE = 12, 2


def committed_manifests(shards_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(shards_dir.glob("*.manifest.json"))}


@pytest.mark.slow
def test_killed_generation_resumes_with_every_key_exactly_once(tmp_path, colours_file, prefect_server, monkeypatch):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "run_name": "crash",
                "output": str(tmp_path / "run"),
                "label_space": str(colours_file),
                "generator": {"backend": "tiny", "steps": 12, "resolution": 32, "batch_size": 2},
                "shards": {"images_per_class": SHARDS * SHARD_SIZE // 3, "shard_size": SHARD_SIZE},
                "clip": {"model": "tiny"},
                "training": {"epochs": 2},
                "orchestration": {"max_workers": 1, "retry_delay_s": 0},
            }
        )
    )
    shards_dir = tmp_path / "run" / "shards"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config_path)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(committed_manifests(shards_dir) if shards_dir.exists() else {}) < 2:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "generation never committed a shard"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    before = committed_manifests(shards_dir)
    assert 2 <= len(before) < SHARDS, "the kill must land part-way through generation"
    for tar_path in shards_dir.glob("*.tar"):  # whatever is visible under a final name is a whole tar
        with tarfile.open(tar_path) as tar:
            assert len(tar.getnames()) == 3 * SHARD_SIZE

    config = load_config(config_path)
    counter = ModelCounter(monkeypatch)
    result = synthesize(config)

    assert counter.images == (SHARDS - len(before)) * SHARD_SIZE  # committed shards were not regenerated
    assert result["stages"]["generate"]["done_now"] == SHARDS - len(before)
    after = committed_manifests(shards_dir)
    assert {name: after[name] for name in before} == before
    run = open_run(config)
    keys = []
    for index in range(run.plan.num_shards):
        with tarfile.open(shards_dir / f"{run.plan.shard(index).name}.tar") as tar:
            keys += sorted({name.split(".")[0] for name in tar.getnames()})
    planned = [sample.key for index in range(run.plan.num_shards) for sample in run.plan.shard(index).samples]
    assert keys == planned and len(set(keys)) == SHARDS * SHARD_SIZE
