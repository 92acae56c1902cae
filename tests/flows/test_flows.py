"""The Prefect layer against a real (test) Prefect server: flows, task runs, retries, cache, artifacts."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter

import synthvision.run
from flows.fanout import StageSummary, artifact_key
from flows.stages import generate_flow, prompts_flow, score_flow
from flows.synthesize import synthesize
from synthvision.core.errors import DataError
from synthvision.stages import generate
from synthvision.storage.store import Storage
from tests.helpers import ModelCounter, check_ui_contents

pytestmark = pytest.mark.usefixtures("prefect_server")


def task_runs_of(flow_run_name: str, expected: int):
    """The flow run's task runs once the server shows all `expected` of them Completed.

    Prefect 3 reports task run states to the server as events, asynchronously: right after a flow
    returns, the API can still lag behind (seen under the load of the full suite)."""
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            flow_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"any_": [flow_run_name]}))
            assert len(flow_runs) <= 1, flow_run_name
            runs = (
                client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_runs[0].id]}))
                if flow_runs
                else []
            )
            if len(runs) == expected and all(run.state and run.state.is_completed() for run in runs):
                return runs
            assert time.monotonic() < deadline, f"{flow_run_name}: {[(r.name, r.state and r.state.name) for r in runs]}"
            time.sleep(0.2)


def artifacts_of(config) -> dict:
    """The latest artifact of each key of the config's output, by the key's suffix (`generate-progress`)."""
    prefix = artifact_key(synthvision.run.open_run(config), "")
    with get_client(sync_client=True) as client:
        # filtered on the server: the session's other tests leave more artifacts than one page holds
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=prefix)))
        return {a.key.removeprefix(prefix + "-"): a for a in artifacts if a.key and a.key.startswith(prefix)}


@pytest.mark.slow
def test_synthesize_end_to_end_with_artifacts(make_config):
    config = make_config(run_name="e2e", orchestration={"gpu_limit": "gpu"})
    result = synthesize(config)
    report = result.report
    assert result.stages["generate"] == StageSummary(
        "generate", shards=3, gpu_slots=4, waves=1, done_now=3, samples=12, task_retries=0
    )
    assert report.data.synthetic_images == 12
    # CF's budget of 800 per class keeps the most confident 800: here all 4 images of each class
    assert report.data.trained_on == 12 and 0 < report.data.passed_filter <= 12
    assert report.evaluation.test_images == 9
    # the best epoch on the test set (the paper's code's figure) is reported beside the last one's
    assert report.evaluation.test_selected_top1 >= report.evaluation.tuned_top1
    assert 1 <= report.evaluation.test_selected_epoch <= 3
    assert report.training["steps"] == 3 * -(-report.data.trained_on // 8)
    run = synthvision.run.open_run(config)
    assert run.storage.exists("train/report.md") and run.storage.exists("train/head.safetensors")
    assert [row.missing for row in run.status()] == [0, 0, 0, 0]

    names = sorted(task.name for task in task_runs_of("e2e-generate-wave-0000", 3))
    assert names == ["generate-shard-00000", "generate-shard-00001", "generate-shard-00002"]
    assert {task.state.name for task in task_runs_of("e2e-score-wave-0000", 3)} == {"Completed"}
    artifacts = artifacts_of(config)
    assert {
        "contact-sheet",
        "generate-progress",
        "generate-shards-wave-0000",
        "score-progress",
        "score-shards-wave-0000",
        "prompts",
        "train-report",
        "train",
        "stages",
    } <= set(artifacts)
    check_ui_contents(artifacts, shards=3, images=12)
    assert "CLIP zero-shot" in artifacts["train-report"].data
    sheet = run.storage.url_of("contact_sheet.png")
    assert sheet in artifacts["contact-sheet"].data
    from PIL import Image

    with Image.open(sheet) as image:  # 12 images in rows of 8: two rows of 128 px + captions
        assert image.size == (8 * 128, 2 * (128 + 3 * 12 + 4))
    assert run.hashes["generate"] in artifacts["generate-shards-wave-0000"].description
    assert run.hashes["train"] in artifacts["train-report"].description


@pytest.mark.slow
def test_second_run_of_a_finished_config_does_no_model_work(make_config, monkeypatch):
    config = make_config(run_name="twice")
    synthesize(config)
    counter = ModelCounter(monkeypatch)  # also drops every in-process model and run cache
    result = synthesize(config)
    assert result.stages["generate"].done_now == 0 and result.stages["score"].done_now == 0
    assert counter.loads == {} and counter.images == 0


def test_each_shard_is_asked_once_whether_it_is_committed(make_config, monkeypatch, caplog):
    """Through Prefect's tasks too, an uncommitted shard's manifest is read once per attempt
    (one, unless a hiccup of the server under load had it retried: said as a warning), not again by the
    task body or the stage function, and only then is a model slot taken."""
    config = make_config(run_name="askonce")
    prompts_flow(config)
    monkeypatch.setattr(generate, "contact_sheet", lambda run: None)  # a reader of its own, after the stage
    reads: Counter[tuple[str, str]] = Counter()
    real = Storage.read_manifest
    monkeypatch.setattr(
        Storage,
        "read_manifest",
        lambda self, folder, shard: reads.update([(folder, shard)]) or real(self, folder, shard),
    )
    generate_flow(config)
    shards = [f"shard-{i:05d}" for i in range(3)]
    attempts = {task.name: task.run_count for task in task_runs_of("askonce-generate-wave-0000", 3)}
    retried = [r.getMessage() for r in caplog.records if "retried:" in r.getMessage()]
    assert reads == Counter({("shards", name): attempts[f"generate-{name}"] for name in shards}), retried
    reads.clear()
    score_flow(config)
    # per attempt of a shard: its scores once; the tar's manifest when asking (it names the tar scores
    # must match) and when reading the tar
    attempts = {task.name: task.run_count for task in task_runs_of("askonce-score-wave-0000", 3)}
    retried = [r.getMessage() for r in caplog.records if "retried:" in r.getMessage()]
    assert reads == Counter({("scores", name): attempts[f"score-{name}"] for name in shards}) + Counter(
        {("shards", name): 2 * attempts[f"score-{name}"] for name in shards}
    ), retried


@pytest.mark.slow
def test_deleted_scores_are_rescored_by_the_next_run(make_config):
    """Storage is the record of what is done (Prefect caches nothing): scores deleted after two runs
    that committed them are computed again, and only they."""
    config = make_config(run_name="rescore")
    synthesize(config)
    synthesize(config)
    run = synthvision.run.open_run(config)
    run.storage.fs.rm(run.storage.path("scores"), recursive=True)
    assert score_flow(config).done_now == 3
    assert [row.committed for row in run.status()][:3] == [1, 3, 3]


def test_a_task_that_fails_once_is_retried_and_the_run_succeeds(make_config, monkeypatch, caplog):
    config = make_config(run_name="flaky")
    prompts_flow(config)
    calls: list[str] = []
    real = generate.generate

    def flaky(run, index):
        calls.append(run.plan.shard(index).name)
        if len(calls) == 1:
            raise ConnectionError("object store hiccup")
        return real(run, index)

    monkeypatch.setattr(generate, "generate", flaky)
    summary = generate_flow(config)
    assert summary.done_now == 3 and summary.task_retries == 1  # reported in the stage's stats
    assert len(calls) == 4 and calls.count(calls[0]) == 2
    run_counts = {task.name: task.run_count for task in task_runs_of("flaky-generate-wave-0000", 3)}
    assert run_counts[f"generate-{calls[0]}"] == 2
    assert sorted(run_counts.values()) == [1, 1, 2]
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "retried" in r.getMessage()]
    assert said == [f"generate-{calls[0]} failed (attempt 1 of 3), retried: ConnectionError: object store hiccup"]


def test_user_errors_are_not_retried(make_config, monkeypatch):
    config = make_config(run_name="usererror", orchestration={"max_workers": 1})
    prompts_flow(config)
    calls: list[str] = []

    def broken(run, index):
        name = run.plan.shard(index).name
        calls.append(name)
        raise DataError(f"{name}: reference image missing")

    monkeypatch.setattr(generate, "generate", broken)
    with pytest.raises(DataError, match="reference image missing"):
        generate_flow(config)
    assert len(calls) == len(set(calls)) >= 1


def test_shards_run_in_waves_with_bounded_futures(make_config, monkeypatch):
    import flows.fanout

    config = make_config(
        run_name="waves",
        shards={"images_per_class": 4, "shard_size": 2},
        orchestration={"shards_per_flow_run": 2, "max_in_flight": 1},
    )
    prompts_flow(config)
    outstanding, peak = [0], [0]
    real = flows.fanout.bounded_futures

    def watched(submit, items, limit, **options):
        def counted(item):
            outstanding[0] += 1
            peak[0] = max(peak[0], outstanding[0])
            return submit(item)

        for result in real(counted, items, limit, **options):
            outstanding[0] -= 1
            yield result

    monkeypatch.setattr(flows.fanout, "bounded_futures", watched)
    summary = generate_flow(config)
    assert summary == StageSummary(
        "generate", shards=6, gpu_slots=2, waves=3, done_now=6, samples=12, task_retries=0
    )  # no limit: the 2 workers
    assert peak[0] == 1
    names = [sorted(t.name for t in task_runs_of(f"waves-generate-wave-{wave:04d}", 2)) for wave in range(3)]
    assert names == [[f"generate-shard-{2 * w:05d}", f"generate-shard-{2 * w + 1:05d}"] for w in range(3)]
    assert artifacts_of(config)["generate-progress"].data == 100.0


def test_a_failed_shard_does_not_stop_the_others_and_its_row_says_why(make_config, monkeypatch):
    import json

    from flows.fanout import ShardsFailed
    from synthvision.stages import generate as generate_stage

    config = make_config(run_name="onefails", orchestration={"retries": 1, "retry_delay_s": 0})
    prompts_flow(config)
    real = generate_stage.generate

    def broken_for_shard_1(run, index):
        if index == 1:
            raise RuntimeError("the device fell over")
        return real(run, index)

    monkeypatch.setattr(generate_stage, "generate", broken_for_shard_1)
    with pytest.raises(ShardsFailed, match=r"^generate: 1 shard\(s\) failed: shard-00001: RuntimeError: the device"):
        generate_flow(config)
    run = synthvision.run.open_run(config)
    assert [row.committed for row in run.status()][:2] == [1, 2]  # shards 0 and 2 went on and committed
    artifacts = artifacts_of(config)
    rows = {row["shard"]: row for row in json.loads(artifacts["generate-shards-wave-0000"].data)}
    assert rows["shard-00001"]["state"] == "failed"
    assert rows["shard-00001"]["reason"] == "RuntimeError: the device fell over"
    assert rows["shard-00000"]["state"] == rows["shard-00002"]["state"] == "done now"
    assert all(value not in ("", None) for row in rows.values() for value in row.values())
    assert "2/3 shards" in artifacts["generate-progress"].description
    assert "1 failed" in artifacts["generate-progress"].description


def test_a_run_page_update_the_server_does_not_answer_is_a_warning_not_a_failure(make_config, monkeypatch, caplog):
    import httpx
    from prefect import flow
    from prefect.artifacts import TableArtifact

    import flows.run_page

    def away():
        raise httpx.ConnectError("All connection attempts failed")

    monkeypatch.setattr(flows.run_page, "top_level_run", away)

    @flow(name="page-while-away")
    def page_while_away():
        flows.run_page.show(TableArtifact, "shards", "a table", table=[{"a": 1}])
        return flows.run_page.publish(TableArtifact, key="report", table=[{"a": 1}])

    assert page_while_away() is None  # the flow ran to its end
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "run page" in r.getMessage()]
    assert said == [
        f"the run page's {key} was not updated (the Prefect server did not answer: ConnectError: All connection "
        "attempts failed); the run goes on"
        for key in ("shards", "report")
    ]
