"""Against a Prefect server started with `prefect server start`: the README's demo command, checked
through Prefect's API, and a deployment from deployments/prefect.yaml run by a process-pool worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from flows.fanout import artifact_key
from synthvision.core.config import load_config
from synthvision.core.stage_table import STAGES
from synthvision.run import open_run
from tests.conftest import REPO, tiny_config
from tests.flows.test_cli import cli
from tests.helpers import check_ui_contents, write_experiment

pytestmark = pytest.mark.slow


@contextmanager
def client_of(server_env: dict[str, str]) -> Iterator:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server_env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        yield client


def prefect(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def demo_on_a_server(prefect_cli_server, tmp_path_factory):
    """README's demo command against `prefect server start`; its output folder and result."""
    out = tmp_path_factory.mktemp("demo-on-a-server") / "demo"
    env = {**prefect_cli_server, "PREFECT_LOGGING_LEVEL": "INFO"}  # a user's default: the run's info lines
    return out, cli("run", "configs/demo.yaml", "--set", f"output={out}", env=env)


def test_demo_against_a_prefect_server_shows_runs_tasks_and_artifacts(demo_on_a_server, prefect_cli_server):
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter

    out, result = demo_on_a_server
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"report: {out}/train/report.md" in result.stdout
    assert f"data quality: {out}/quality/report.md" in result.stdout
    report = json.loads((out / "train" / "report.json").read_text())
    assert report["data"]["synthetic_images"] == 500 and report["evaluation"]["test_images"] == 2000
    # the toy world's point: tuning on its synthetic images beats its CLIP's zero-shot on real test images
    assert report["evaluation"]["tuned_top1"] > report["evaluation"]["zero_shot_top1"] + 5, report["evaluation"]

    with client_of(prefect_cli_server) as client:
        flow_runs = {run.name: run for run in client.read_flow_runs()}
        assert {
            "demo",
            "demo-prompts",
            "demo-generate",
            "demo-generate-wave-0000",
            "demo-score",
            "demo-train",
            "demo-quality",
        } <= set(flow_runs)
        assert flow_runs["demo"].state.is_completed()
        wave = flow_runs["demo-generate-wave-0000"]
        deadline = time.monotonic() + 30  # task-run states reach the server asynchronously
        while True:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [wave.id]}))
            if len(tasks) == 10 and all(task.state.is_completed() for task in tasks) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sorted(task.name for task in tasks) == [f"generate-shard-{i:05d}" for i in range(10)]
        assert all(task.state.is_completed() for task in tasks)
        prefix = artifact_key(open_run(load_config(REPO / "configs/demo.yaml", [f"output={out}"])), "")
        artifacts = {a.key.removeprefix(prefix + "-"): a for a in client.read_artifacts() if a.key.startswith(prefix)}
    check_ui_contents(artifacts, shards=10, images=500)
    shard_rows = json.loads(artifacts["generate-shards-wave-0000"].data)
    assert [row["shard"] for row in shard_rows] == [f"shard-{i:05d}" for i in range(10)]
    assert {"score-shards-wave-0000", "train-report", "stages", "quality", "quality-report"} <= set(artifacts)
    assert "| **all** | 500 |" in artifacts["quality-report"].data  # the data-quality report of the demo
    assert str(out / "contact_sheet.png") in artifacts["contact-sheet"].data

    # the run page a user opens (the top-level flow run `demo`) holds one of each artifact, the wave
    # tables updated in place while their waves ran, and its last log line says the top-1 and where
    # the reports are
    with client_of(prefect_cli_server) as client:
        on_top = client.read_artifacts(flow_run_filter=FlowRunFilter(id={"any_": [flow_runs["demo"].id]}), limit=200)
        messages = [log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [flow_runs["demo"].id]}))]
    keys = Counter(artifact.key.removeprefix(prefix + "-") for artifact in on_top)
    expected = {"generate-progress", "score-progress", "generate-shards-wave-0000", "score-shards-wave-0000"}
    assert expected | {"contact-sheet", "train-report", "stages", "quality-report", "prompts"} <= set(keys), keys
    assert set(keys.values()) == {1}, keys
    table = next(a for a in on_top if a.key.endswith("generate-shards-wave-0000"))
    assert table.updated > table.created  # shown while its wave ran, then updated
    assert any(
        message.startswith("top-1: zero-shot") and f"report: {out}/train/report.md" in message for message in messages
    ), messages[-3:]

    status = cli("status", "configs/demo.yaml", "--set", f"output={out}")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[2].split()[:5] == ["generate", "10", "10", "0", "500/500"] and "images/s/worker" in lines[2]
    assert lines[3].split()[:5] == ["score", "10", "10", "0", "500/500"] and lines[3].endswith(" 0s")
    assert [line.split()[0] for line in lines[1 : 1 + len(STAGES)]] == [stage.name for stage in STAGES]
    assert "pretrain  off: the config has no pretrain section" in status.stdout
    assert lines[-1] == "writer: none (no run holds the output)"
    status = cli("status", "configs/demo.yaml", "--set", f"output={out}", "--set", "generator.steps=5")
    assert status.stdout.split("\n")[2].split() == ["generate", "10", "0", "10", "0/500", "—", "—"]


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_the_demo_s_pages_in_a_real_browser(demo_on_a_server, prefect_cli_server, tmp_path):
    """benchmarks/ui_check.py's checks, in headless Chromium, on the demo's flow run and artifacts."""
    from benchmarks.ui_check import check_pages

    out, result = demo_on_a_server
    assert result.returncode == 0, result.stderr[-3000:]
    results = check_pages(prefect_cli_server, "demo", tmp_path)
    assert all(passed for _, _, passed in results), results
    checked = {page for page, _, _ in results}
    assert {"contact-sheet", "stages", "generate-progress", "score-progress", "flow run"} <= checked, checked
    assert (tmp_path / "flow-run.png").stat().st_size > 10_000


def test_a_rerun_of_the_demo_is_told_apart_from_the_first_run_by_name(demo_on_a_server, prefect_cli_server):
    out, _ = demo_on_a_server
    rerun = cli("run", "configs/demo.yaml", "--set", f"output={out}", env=prefect_cli_server)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with client_of(prefect_cli_server) as client:
        top_level = [run for run in client.read_flow_runs() if run.parent_task_run_id is None]
    names = {run.name: run for run in top_level}
    assert {"demo", "demo-run-2"} <= set(names) and names["demo-run-2"].state.is_completed()


def deploy_on_a_process_pool(server_env: dict[str, str]) -> dict[str, str]:
    """The process work pool `synthvision-local` and the shipped `synthesize/local` deployment on the
    server, as deployments/README.md makes them; the environment for its workers (polling each second)."""
    env = {**server_env, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    prefect("work-pool", "create", "synthvision-local", "--type", "process", "--overwrite", env=env)
    prefect("deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "synthesize/local", env=env)
    return env


def test_a_deployment_runs_on_a_process_work_pool_worker(tmp_path, prefect_cli_server, colours_file):
    env = deploy_on_a_process_pool(prefect_cli_server)
    config = tiny_config(tmp_path / "run", colours_file, run_name="deployed")
    config_file = tmp_path / "deployed.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    unknown = cli("submit", str(config_file), "--deployment", "synthesize/nowhere", env=env)
    assert unknown.returncode == 2 and unknown.stderr.startswith(
        "error: deployment 'synthesize/nowhere' not found on the Prefect server"
    )

    # no worker yet: --wait gives up with a hint instead of hanging, and the run stays queued
    queued = cli("submit", str(config_file), "--set", "run_name=queued", "--wait", "--pickup-timeout", "3", env=env)
    assert queued.returncode == 1 and "watch it at " in queued.stdout and "Scheduled" in queued.stdout
    assert "error: no worker started flow run queued within 3 s" in queued.stderr
    assert "prefect worker start --pool synthvision-local" in queued.stderr
    with client_of(prefect_cli_server) as client:
        (stranded,) = [run for run in client.read_flow_runs() if run.name == "queued"]
        client.delete_flow_run(stranded.id)

    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "synthvision-local"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = cli("submit", str(config_file), "--deployment", "synthesize/local", "--wait", env=env)
        broken = cli(
            "submit", str(config_file), "--set", "run_name=broken", "--set", "label_space=/nope/classes.txt", "--wait",
            env=env,
        )  # fmt: skip
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a worker busy with the API may outlive SIGTERM; the run is judged below
            worker.kill()
            worker.wait()
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("flow run deployed (") and lines[1].startswith("watch it at http")
    states = [line.split(" ", 1)[1].split(":")[0] for line in lines[2:]]
    assert states[-1] == "Completed" and "Running" in states, states  # each state as the run enters it
    # a run that fails on the worker: its own error, not just "Failed"
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines()[-1].startswith("error: flow run broken ended Failed: ")
    assert "label_space '/nope/classes.txt' is neither a built-in" in broken.stderr

    with client_of(prefect_cli_server) as client:
        deployment = client.read_deployment_by_name("synthesize/local")
        run = next(r for r in client.read_flow_runs() if r.name == "deployed")
        assert run.deployment_id == deployment.id and run.state.is_completed()
        assert run.parameters["config"]["run_name"] == "deployed"
    assert (tmp_path / "run" / "train" / "report.json").is_file()


def test_the_kubernetes_pool_template_requests_gpus(prefect_cli_server):
    import asyncio

    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = json.loads((REPO / "deployments" / "k8s-gpu-job-template.json").read_text())
    values = {
        "gpu_count": 2,
        "image": "registry.example/synthvision-worker:1",
        "node_selector": {"nvidia.com/gpu.product": "H100"},
    }
    with temporary_settings({PREFECT_API_URL: prefect_cli_server["PREFECT_API_URL"]}):
        job = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, values)).job_manifest
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert (
        container["resources"]["limits"]["nvidia.com/gpu"] == 2
        and container["resources"]["requests"]["nvidia.com/gpu"] == 2
    )
    assert container["image"] == "registry.example/synthvision-worker:1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_an_experiment_s_pages_in_a_real_browser(prefect_cli_server, make_config, tmp_path):
    """`synthvision experiment FILE` against a server, then benchmarks/ui_check.py's checks on its run
    page (the verdicts logged), its report (the plot loads) and its table (no blank cell)."""
    from benchmarks.ui_check import check_pages, experiment_pages

    base = make_config(tmp_path / "unused").model_dump(mode="json", exclude={"base_dir", "output", "shared_stages"})
    path = write_experiment(tmp_path, base, name="browsed")
    env = {**prefect_cli_server, "PREFECT_LOGGING_LEVEL": "INFO"}  # a user's default: the run's info lines
    result = cli("experiment", str(path), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    name, keys = experiment_pages(path)
    results = check_pages(prefect_cli_server, name, tmp_path, "against", 2, keys)
    assert [row for row in results if not row[2]] == []
    assert {"experiment", "experiment-report"} <= {page for page, _, _ in results}
    assert (tmp_path / "experiment-report.png").stat().st_size > 10_000
