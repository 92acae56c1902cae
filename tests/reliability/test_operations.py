"""What operators meet, through the real `synthvision` command: a disk that fills up, SIGTERM and Ctrl-C
(mid-shard, or waiting for a GPU slot another run holds), and the Prefect server killed and started
again mid-run. Each is one line, loses nothing, leaves no flow run Running, and a rerun completes the
run exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from synthvision.core.config import load_config
from synthvision.core.failpoints import ENV as KILL_AT
from synthvision.run import Run
from tests.conftest import REPO
from tests.flows.test_engines import wave_rows
from tests.loopback import PrefectServer
from tests.reliability.harness import TALLY, check_complete, check_visible, tail, temporaries
from tests.reliability.test_bad_inputs import write_config

pytestmark = pytest.mark.slow
UNFINISHED = {"RUNNING", "PENDING", "SCHEDULED", "CANCELLING", "PAUSED"}


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def all_flow_runs(prefix: str) -> list:
    """The flow runs of this Prefect API whose names start with `prefix`, oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix)), sort=FlowRunSort.START_TIME_ASC
        )
    return [run for run in runs if run.name.startswith(prefix)]


def flow_runs(prefix: str) -> dict[str, object]:
    """The flow runs whose names start with `prefix`, by name (the latest of a name)."""
    return {run.name: run for run in all_flow_runs(prefix)}


def unfinished(prefix: str) -> list[str]:
    return [run.name for run in all_flow_runs(prefix) if run.state_type.value in UNFINISHED]


def logs_of(flow_run) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))]


def running_tasks(prefix: str, task_prefix: str = "") -> list[str]:
    """The task runs now Running, named `task_prefix...`, of the flow runs named `prefix...`."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix)),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=task_prefix)),
        )
    return [task.name for task in tasks if task.state_type.value == "RUNNING"]


def failed_task_run_counts(flow_run) -> list[int]:
    """How many times each failed task run of a flow run ran (1: never retried)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    return [task.run_count for task in tasks if task.state_type.value == "FAILED"]


def run_of(config: str) -> Run:
    return Run(load_config(config))


# -- a full disk --------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs (mounting needs root: CI's container has it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_one_line_not_retried_and_the_rerun_completes(launcher, small_disk, tmp_path, colours_file):
    config = write_config(
        tmp_path,
        str(small_disk / "run"),
        colours_file,
        run_name="full-disk",
        generator={"resolution": 64},
        shards={"images_per_class": 40, "shard_size": 4},
        orchestration={"max_workers": 2, "retries": 2, "retry_delay_s": 0},
    )
    code = launcher.run(["run", config])
    log = tail(launcher.logs / f"cli-{launcher.count:03d}.log", 200_000)
    assert code == 2 and "Traceback" not in log, log
    last = log.strip().splitlines()[-1]
    assert last.startswith(f"error: output {small_disk / 'run'} is full") and "while writing shards/shard-" in last
    # not retried as if transient; the shards in flight failed (2 workers, each of which may have taken
    # its next shard before the first failure was seen), the rest never started; each counted once
    rows = wave_rows(load_config(config))
    states = [row["state"] for row in rows]
    assert len(rows) == 30 and set(states) <= {"done now", "failed", "not started"}, states
    assert 1 <= states.count("failed") <= 4 and states.count("not started") >= 20, states
    # a shard may be retried for a server's or store's hiccup under load (each said, with its error), never
    # for the full disk
    retried = [line for line in log.splitlines() if "retried:" in line]
    assert not [line for line in retried if "is full" in line], retried
    failed_counts = failed_task_run_counts(flow_runs("full-disk")["full-disk-generate-wave-0000"])
    assert failed_counts == [1] * states.count("failed"), retried
    run = run_of(config)
    assert not temporaries(run.storage)  # nothing half-written left behind, and nothing of it committed
    check_visible(run.storage)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert launcher.run(["run", config]) == 0, tail(launcher.logs / f"cli-{launcher.count:03d}.log")
    check_complete(run_of(config))
    TALLY.operations["disk full"] += 1


# -- signals ------------------------------------------------------------------------------------------


def stop_and_time(process, signum: int) -> float:
    sent = time.monotonic()
    os.kill(process.pid, signum)
    process.join(60)
    return time.monotonic() - sent


def check_stopped_cleanly(process, signum: int, name: str, output: Path, seconds: float) -> None:
    """Exit 128 + signal within seconds, one line saying so, no run left Running, the reason and the
    last logs on the server, the output's lock released."""
    log = tail(process.log, 200_000)
    assert process.exitcode == 128 + signum, log
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    assert "Traceback" not in log, log
    assert log.strip().splitlines()[-1].startswith(f"synthvision: stopped by {signal.Signals(signum).name}"), log
    assert unfinished(name) == []
    top = flow_runs(name)[name]
    assert top.state_type.value == "CRASHED" and "signal" in top.state.message, top.state
    # its last words reached the server (which may take a moment to store them)
    wait_for(lambda: any("Crash detected" in message for message in logs_of(top)), 15, f"logs: {logs_of(top)}")
    assert not (output / "lock.json").exists()


def slow_batches_config(tmp_path, colours_file, name: str, seconds_per_batch: float = 120) -> str:
    """A run at `tmp_path/run` of 6 one-batch shards on 2 workers, each batch `seconds_per_batch` long
    (by default, it outlasts the test): the shards are in flight when the test strikes. Its rerun sets
    `generator.seconds_per_batch=0` (in no hash: the same shards)."""
    return write_config(
        tmp_path,
        str(tmp_path / "run"),
        colours_file,
        run_name=name,
        generator={"backend": "loadtest", "seconds_per_batch": seconds_per_batch, "batch_size": 2},
        orchestration={"max_workers": 2},
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_shard_stops_the_command_within_seconds(signum, launcher, tmp_path, colours_file):
    name = f"stopped-{signum.name.lower()}"
    config = slow_batches_config(tmp_path, colours_file, name)
    process = launcher.start(["run", config])
    wait_for(lambda: f"{name}-generate-wave-0000" in flow_runs(name), 120, "the generate wave")
    time.sleep(2)  # its shard tasks are in their first batch
    check_stopped_cleanly(process, signum, name, tmp_path / "run", stop_and_time(process, signum))

    # the model time is not in the data's hash: the rerun makes the same shards, quickly
    rerun = ["run", config, "--set", "generator.seconds_per_batch=0"]
    assert launcher.run(rerun) == 0, tail(launcher.logs / f"cli-{launcher.count:03d}.log")
    check_complete(run_of(config))
    TALLY.operations[signum.name] += 1


def test_sigterm_ends_a_wait_for_a_gpu_slot_that_another_run_holds(launcher, tmp_path, colours_file):
    from prefect import get_client
    from prefect.concurrency.sync import concurrency

    limit, name = "gpu-held-elsewhere", "slot-wait"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(limit, 1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # another run's model, holding the only slot
        with concurrency(limit, occupy=1, lease_duration=60, strict=True):
            holding.set()
            release.wait(120)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert holding.wait(30)
        config = write_config(
            tmp_path,
            str(tmp_path / "run"),
            colours_file,
            run_name=name,
            generator={"backend": "loadtest"},
            orchestration={"max_workers": 1, "gpu_limit": limit, "gpu_slots": 1},
        )
        process = launcher.start(["run", config])
        # its first task that needs the GPU (the prompts stage's) runs, and can only wait for the slot (the
        # wait is logged at INFO, below these tests' level)
        wait_for(lambda: running_tasks(name), 120, "its first task run")
        time.sleep(2)
        check_stopped_cleanly(process, signal.SIGTERM, name, tmp_path / "run", stop_and_time(process, signal.SIGTERM))
    finally:
        release.set()
        holder.join(30)
    TALLY.operations["SIGTERM waiting for a slot"] += 1


# -- the Prefect server killed and started again ------------------------------------------------------


@pytest.fixture
def restartable_server(tmp_path):
    server = PrefectServer(tmp_path / "prefect-home").start()
    yield server
    server.kill()


def test_the_prefect_server_restarted_mid_generate_the_run_carries_on(restartable_server, tmp_path, colours_file):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server, name, limit = restartable_server, "server-restart", "gpu-restart"
    config = write_config(
        tmp_path,
        str(tmp_path / "run"),
        colours_file,
        run_name=name,
        generator={"backend": "loadtest", "seconds_per_batch": 1, "batch_size": 2},
        shards={"images_per_class": 8, "shard_size": 2},
        orchestration={"max_workers": 2, "retries": 3, "retry_delay_s": 2, "gpu_limit": limit, "gpu_slots": 2},
    )
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        command = [sys.executable, "-m", "flows.cli", "run", config]
        process = subprocess.Popen(command, cwd=REPO, env=server.env, stdout=log, stderr=subprocess.STDOUT)
    shards = tmp_path / "run" / "shards"
    wait_for(lambda: len(list(shards.glob("*.manifest.json"))) >= 2, 180, "two shards committed")
    server.kill()
    time.sleep(3)
    server.start()
    assert process.wait(300) == 0, tail(log_path)
    run = run_of(config)
    check_complete(run)
    with temporary_settings({PREFECT_API_URL: server.api}):
        assert unfinished(name) == [] and flow_runs(name)[name].state_type.value == "COMPLETED"

        def slots_held() -> int:
            with get_client(sync_client=True) as client:
                return client.read_global_concurrency_limit_by_name(limit).active_slots

        # slots held when the server went away come back (their leases run out): no hand reset
        wait_for(lambda: slots_held() == 0, run.config.orchestration.gpu_lease_s + 45, "the GPU slots to come back")
    rerun = subprocess.run(command, cwd=REPO, env=server.env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    check_complete(run_of(config))
    TALLY.operations["Prefect server restarts"] += 1


def test_a_run_killed_without_a_word_is_marked_crashed_by_the_shipped_automation(
    restartable_server, tmp_path, colours_file
):
    """deployments/crash-zombie-runs.yaml on a server: a run SIGKILLed mid-shard, which cannot say it
    died, ends Crashed once its heartbeats stop (here every 30 s, the least Prefect allows, and the
    automation's `within` set to three of them as the file says)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server, name = restartable_server, "zombie"
    automation = yaml.safe_load((REPO / "deployments" / "crash-zombie-runs.yaml").read_text())
    automation["trigger"]["within"] = 3 * 30
    create = [sys.executable, "-m", "prefect", "automation", "create", "--from-json", json.dumps(automation)]
    created = subprocess.run(create, env=server.env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr
    config = write_config(
        tmp_path,
        str(tmp_path / "run"),
        colours_file,
        run_name=name,
        generator={"backend": "loadtest", "seconds_per_batch": 1, "batch_size": 2},
        orchestration={"max_workers": 2},
    )
    env = {**server.env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", KILL_AT: "generate.batch:1"}
    command = [sys.executable, "-m", "flows.cli", "run", config]
    killed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    with temporary_settings({PREFECT_API_URL: server.api}):
        assert name in unfinished(name)  # left Running by a process that could not say it died
        wait_for(lambda: not unfinished(name), 240, f"the automation to mark {unfinished(name)} Crashed")
        top = flow_runs(name)[name]
        assert top.state_type.value == "CRASHED" and "no heartbeat" in top.state.message, top.state
    TALLY.operations["silent deaths marked Crashed"] += 1


# -- a Prefect process worker sent SIGTERM -----------------------------------------------------------


def test_sigterm_to_a_prefect_process_worker_leaves_its_run_to_the_next(prefect_cli_server, tmp_path, colours_file):
    """Prefect's process worker turns SIGTERM into a SIGINT to itself. Mostly it then exits within a
    second and takes the flow run it started down with it, unannounced (as SIGKILL would: the run
    cannot mark itself Crashed or release its lock); sometimes (twice in CI) it lets the signal pass
    and its run goes on, until a second SIGTERM kills the worker (its run, orphaned, finishes). Either
    way nothing is lost: the next run of the output takes a dead run's lock over, marks its flow and
    task runs Crashed, or waits for a live one; and the run completes exactly once."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.flows.test_prefect_server import cli, deploy_on_a_process_pool

    env = deploy_on_a_process_pool(prefect_cli_server)
    name = "worker-sigterm"
    config = slow_batches_config(tmp_path, colours_file, name, seconds_per_batch=15)  # a run left on ends soon
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "synthvision-local"]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        submitted = cli("submit", config, "--deployment", "synthesize/local", env=env)
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        with temporary_settings({PREFECT_API_URL: prefect_cli_server["PREFECT_API_URL"]}):
            wait_for(lambda: running_tasks(name, "generate-shard-"), 180, "the deployed run's first shards")
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:  # it let the signal pass: a second one, as Kubernetes' SIGKILL
            worker.send_signal(signal.SIGTERM)  # Prefect's handler: the second SIGTERM is a SIGKILL
            worker.wait(30)
        took = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()

    rerun = cli("run", config, "--set", "generator.seconds_per_batch=0", env=prefect_cli_server)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    check_complete(run_of(config))
    with temporary_settings({PREFECT_API_URL: prefect_cli_server["PREFECT_API_URL"]}):
        assert unfinished(name) == []
        first = flow_runs(name)[name]
        assert flow_runs(name)[f"{name}-run-2"].state_type.value == "COMPLETED"
    if first.state_type.value == "CRASHED":  # the worker took it down: the rerun took over
        assert f"resuming flow run {name} (" in rerun.stderr and f"flow run {name}-run-2 " in first.state.message
    else:  # the worker let the first signal pass: its run went on
        assert first.state_type.value == "COMPLETED" and took > 60, (first.state, took, tail(log))
    print(f"Prefect worker SIGTERM: exited after {took:.1f} s; its flow run ended {first.state_type.value}")
    TALLY.operations["Prefect worker SIGTERMs"] += 1
