"""Shard tasks on worker processes bound to (fake) devices, under a Prefect global concurrency limit,
and on a local Dask cluster: every shard exactly once, no two at once on one slot."""

from __future__ import annotations

import itertools
import json
import os

import pytest

from flows.fanout import artifact_key
from flows.stages import generate_flow, prompts_flow
from synthvision.core.errors import ConfigError
from synthvision.run import open_run

pytestmark = pytest.mark.usefixtures("prefect_server")


def wave_rows(config) -> list[dict]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = artifact_key(open_run(config), "generate-shards-wave-0000")
    with get_client(sync_client=True) as client:  # filtered on the server: one page holds too few of the session's
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return json.loads(artifacts[-1].data) if isinstance(artifacts[-1].data, str) else artifacts[-1].data


def overlapping(intervals: list[tuple[float, float]]) -> list[tuple]:
    ordered = sorted(intervals)
    return [(a, b) for a, b in itertools.pairwise(ordered) if b[0] < a[1]]  # start-sorted: adjacent pairs suffice


def assert_every_shard_once(config, rows: list[dict]) -> None:
    run = open_run(config)
    planned = [run.plan.shard(i).name for i in range(run.plan.num_shards)]
    assert sorted(row["shard"] for row in rows) == planned
    assert all(row["state"] == "done now" for row in rows)
    tars = sorted(p.rsplit("/", 1)[-1] for p in run.storage.fs.ls(run.storage.path("shards")) if p.endswith(".tar"))
    assert tars == [f"{name}.tar" for name in planned]
    assert run.status()[1].missing == 0


@pytest.mark.slow
def test_device_workers_take_shards_dynamically_one_at_a_time_per_device(make_config):
    config = make_config(
        run_name="devices",
        shards={"images_per_class": 4, "shard_size": 2},
        orchestration={
            "engine": "processes",
            "devices": ["cpu", "cpu"],
            "gpu_limit": "gpu-devices",
            "gpu_slots": None,
        },  # created: one slot per device
    )
    prompts_flow(config)
    summary = generate_flow(config)
    assert summary.done_now == 6 and summary.gpu_slots == 2
    rows = wave_rows(config)
    assert_every_shard_once(config, rows)
    by_device: dict[str, list] = {}
    for row in rows:
        by_device.setdefault(row["device"], []).append((row["slot_start"], row["slot_end"]))
    assert set(by_device) == {"0:cpu", "1:cpu"}  # both worker processes, each bound to its own slot
    assert all(not overlapping(spans) for spans in by_device.values())


@pytest.mark.slow
def test_the_global_gpu_limit_caps_model_work_across_workers(make_config):
    config = make_config(
        run_name="oneslot",
        shards={"images_per_class": 2, "shard_size": 2},
        orchestration={"engine": "processes", "devices": ["cpu", "cpu"], "gpu_limit": "gpu-oneslot", "gpu_slots": 1},
    )
    prompts_flow(config)
    assert generate_flow(config).gpu_slots == 1
    rows = wave_rows(config)
    assert_every_shard_once(config, rows)
    # two worker processes, one slot: model work never overlaps anywhere
    assert not overlapping([(row["slot_start"], row["slot_end"]) for row in rows])


@pytest.mark.slow
def test_shards_run_on_a_local_dask_cluster(make_config):
    config = make_config(run_name="dask", orchestration={"engine": "dask", "gpu_limit": "gpu-dask"})
    threads_before = os.environ.get("OMP_NUM_THREADS")
    prompts_flow(config)
    assert generate_flow(config).done_now == 3
    assert_every_shard_once(config, wave_rows(config))
    # the local cluster's OMP_NUM_THREADS=1 for its workers does not stay behind in this process
    assert os.environ.get("OMP_NUM_THREADS") == threads_before


def test_fixed_devices_conflict_with_device_workers(make_config):
    with pytest.raises(ConfigError, match="generator.device is 'cpu'.*use device: auto"):
        make_config(generator={"device": "cpu"}, orchestration={"engine": "processes"})
    with pytest.raises(ConfigError, match="dask_address is set but engine is 'threads'"):
        make_config(orchestration={"dask_address": "tcp://127.0.0.1:8786"})


def test_each_worker_claims_a_free_device_slot(tmp_path, monkeypatch):
    from synthvision.models.devices import (
        DEVICE_ENV,
        SLOT_ENV,
        bind_device,
        bound_device,
        expand_devices,
        resolve_device,
    )

    # setenv (not delenv) so that monkeypatch restores the unbound state after bind_device sets them
    monkeypatch.setenv(DEVICE_ENV, "")
    monkeypatch.setenv(SLOT_ENV, "")
    assert expand_devices(["auto"]) == ["cpu"]  # no CUDA here: one CPU worker
    devices = ["cpu", "meta"]
    assert bind_device(devices, str(tmp_path)) == "cpu" and bound_device() == "0:cpu"
    assert bind_device(devices, str(tmp_path)) == "meta" and bound_device() == "1:meta"  # slot 0 is held
    assert resolve_device("auto").type == "meta"  # 'auto' is the bound device
    with pytest.raises(RuntimeError, match="all 2 device slots"):
        bind_device(devices, str(tmp_path))
