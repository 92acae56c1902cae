"""Scale-out rehearsal: README's demo on a Dask cluster of separate processes (a scheduler and two
workers, each in its own working directory with its own Prefect home), sharing nothing but a Prefect
server (`prefect server start`) and an S3 server, as separate machines would; then the same with one
worker SIGKILLed while it holds a shard, as a machine that dies. Every planned key ends in the output
exactly once, and no run is left Running."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthvision.core.config import load_config
from synthvision.core.failpoints import ENV as KILL_AT
from synthvision.run import Run
from tests.conftest import REPO
from tests.flows.test_prefect_server import client_of
from tests.loopback import DaskCluster
from tests.reliability.harness import TALLY, check_complete, tail
from tests.reliability.test_bad_inputs import write_config

pytestmark = pytest.mark.slow
DEMO = REPO / "configs" / "demo.yaml"


def unfinished_runs(server_env: dict[str, str], name: str) -> list[str]:
    """Flow runs and task runs of run `name` (its flow runs are `name`, `name-...`) that are not finished."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    with client_of(server_env) as client:
        flows = [
            run for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)))
        ]
        flows = [run for run in flows if run.name == name or run.name.startswith(f"{name}-")]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id for run in flows])))
    return [f"flow run {run.name}: {run.state_type.value}" for run in flows if not run.state.is_final()] + [
        f"task run {run.name}: {run.state_type.value}" for run in tasks if not run.state.is_final()
    ]


@pytest.mark.parametrize("kill", [False, True], ids=["two-workers", "a-worker-killed-mid-shard"])
def test_the_demo_on_a_dask_cluster_of_separate_processes(kill, prefect_cli_server, s3_bucket, tmp_path):
    bucket, options = s3_bucket
    name = "scale-out-killed" if kill else "scale-out"
    env = {**os.environ, **prefect_cli_server}  # the S3 server's credentials are in os.environ
    # worker 0 of the killed case SIGKILLs itself after its first batch of images: mid-shard, its tar open
    workers = [{**env, KILL_AT: "generate.batch:1"} if kill and number == 0 else env for number in range(2)]
    overrides = [
        f"run_name={name}",
        f"output={bucket}/demo",
        f"storage_options={{endpoint_url: '{options['endpoint_url']}'}}",
        "shards.images_per_class=5",  # 5 shards of 10 images: each worker gets several
        "shards.shard_size=10",
        "orchestration.engine=dask",
    ]
    with DaskCluster(tmp_path, workers) as cluster:
        command = [sys.executable, "-m", "flows.cli", "run", str(DEMO)]
        command += [
            part for value in [*overrides, f"orchestration.dask_address={cluster.address}"] for part in ("--set", value)
        ]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        logs = f"{result.stderr[-4000:]}\nworker 0:\n{tail(tmp_path / 'worker-0.log')}"
        assert result.returncode == 0, logs
        if kill:
            assert cluster.workers[0].poll() == -9, logs  # it died with its shard, and the other one finished
            assert cluster.workers[1].poll() is None
    run = Run(load_config(DEMO, overrides))
    check_complete(run)  # every planned key once in tars and scores; every manifest's data whole
    assert unfinished_runs(prefect_cli_server, name) == []
    TALLY.operations["node kills" if kill else "scale-out runs"] += 1


def test_a_dask_worker_sent_sigterm_mid_shard_hands_its_shard_back(
    prefect_cli_server, s3_bucket, tmp_path, colours_file
):
    """SIGTERM is how a scheduler (Kubernetes, Slurm, a spot VM's notice) takes a worker back: the worker
    leaves the cluster, the shard it held goes to the other, and nothing is lost or doubled."""
    bucket, options = s3_bucket
    name = "scale-out-sigterm"
    env = {**os.environ, **prefect_cli_server}
    workers = [{**env, KILL_AT: "generate.batch:1:SIGTERM"}, env]  # worker 0: mid-shard, its tar open
    config = write_config(
        tmp_path,
        f"{bucket}/sigterm",
        colours_file,
        run_name=name,
        storage_options={"endpoint_url": options["endpoint_url"]},
        generator={"backend": "loadtest", "seconds_per_batch": 2, "batch_size": 2},
        shards={"images_per_class": 4, "shard_size": 4},  # 3 shards of 2 batches
        orchestration={"engine": "dask"},
    )
    with DaskCluster(tmp_path, workers) as cluster:
        command = [sys.executable, "-m", "flows.cli", "run", config]
        command += ["--set", f"orchestration.dask_address={cluster.address}"]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        logs = f"{result.stderr[-4000:]}\nworker 0:\n{tail(tmp_path / 'worker-0.log')}"
        assert result.returncode == 0, logs
        assert cluster.workers[0].wait(60) == 0 and cluster.workers[1].poll() is None, logs  # it left cleanly
        worker = cluster.log("worker-0")
        assert "Received signal SIGTERM" in worker and "execute('generate_shard_task" in worker, worker
    check_complete(Run(load_config(config)))
    assert unfinished_runs(prefect_cli_server, name) == []
    TALLY.operations["Dask worker SIGTERMs"] += 1
