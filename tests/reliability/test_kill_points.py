"""Kill anywhere: SIGKILL the running `synthvision` process at randomly chosen failpoints (prompt
expansion, mid-shard, after a shard's model work and before its tail is written, between tar and
manifest, mid-commit of any file, mid-scoring, after a top-up round is recorded and in its shards,
before the report, mid-training checkpoint), rerun
after each kill, and check what a reader sees every time.

Where each point fires (its visit: which batch, shard or file) is random, with a seed printed at the
start (set SYNTHVISION_KILL_SEED to replay a run of the suite). Each kind of point is killed at once
first, in pipeline order; then the points are drawn among those the remaining work still passes.
"""

from __future__ import annotations

import itertools
import os
import random

import pytest
import yaml

from synthvision.core import failpoints
from synthvision.core.config import load_config
from synthvision.run import Run
from tests.reliability.harness import KILLED, TALLY, check_complete, check_visible, tail

SEED = int(os.environ.get("SYNTHVISION_KILL_SEED") or random.SystemRandom().randrange(10**6))
CLASSES, PER_CLASS, SHARD_SIZE = 3, 4, 2  # 6 shards of 2
SHARDS = CLASSES * PER_CLASS // SHARD_SIZE


def write_config(path, output: str, options: dict, label_space) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "run_name": "kills",
                "output": output,
                "storage_options": options,
                "label_space": str(label_space),
                "prompts": {
                    "strategy": "language_enhancement",
                    "sentences_per_class": 2,
                    "sentence_model": {"model": "tiny"},
                },
                "generator": {"backend": "tiny", "steps": 2, "resolution": 32, "batch_size": 1},
                # quota mode: the tiny CLIP passes 0, 0 and 4 of the first 4 images per class, so one
                # top-up round of 4 red and 4 green (2 more shards each) runs, to the cap of 8
                "shards": {"images_per_class": PER_CLASS, "shard_size": SHARD_SIZE, "top_up": {"max_per_class": 8}},
                "filter": {"per_class": PER_CLASS},
                "clip": {"model": "tiny", "batch_size": 1},
                "training": {"epochs": 2},
                "evaluation": {"demo_test_set": {"per_class": 2, "size": 32}},
                "pretrain": {
                    "arch": "resnet18",
                    "image_size": 32,
                    "checkpoint_every": 1,
                    "optim": {"epochs": 2, "batch_size": 4, "lr": 0.01},
                },
                # no GPU limit: a killed run's slot would stay leased for a minute or more
                "orchestration": {"max_workers": 1, "retry_delay_s": 0, "gpu_limit": None},
            }
        )
    )
    return str(path)


def pipeline_points(run: Run, rng: random.Random) -> list[str]:
    """Failpoints (`name:visit`) that the rest of this run's `synthvision run` passes, in stage order."""
    status = {row.stage: row.missing for row in run.status()}
    if not any(status.values()):
        return []
    points = []
    if status["prompts"]:
        points.append(f"prompts.class:{rng.randint(1, CLASSES)}")
    if status["generate"]:
        points += [
            f"generate.batch:{rng.randint(1, 2 * status['generate'])}",
            f"generate.after_model:{rng.randint(1, status['generate'])}",
            f"generate.before_manifest:{rng.randint(1, status['generate'])}",
        ]
    if status["score"]:
        points += [
            f"score.batch:{rng.randint(1, 2 * status['score'])}",
            f"score.after_model:{rng.randint(1, status['score'])}",
            f"score.before_manifest:{rng.randint(1, status['score'])}",
        ]
    if not run.top_ups and status["train"]:
        points.append("top_up.recorded:1")  # once the first round is scored, before training
    if status["train"]:
        points.append("train.before_report:1")
    return [*points, f"storage.before_commit:{rng.randint(1, 3)}"]


def manifests(storage) -> dict[str, bytes]:
    """Every committed manifest's bytes (they hold the shard's timings: a redone shard changes them)."""
    return {
        f"{d}/{n}": storage.read_bytes(f"{d}/{n}")
        for d in ("shards", "scores")
        for n in storage.list(d, ".manifest.json")
    }


def checkpoint_step(run: Run) -> int | None:
    latest = run.storage.read_json("pretrain/ckpt/latest.json")
    return None if latest is None else latest["step"]


# per storage, pre-training's two included: every kind on each, and one in a top-up round's shards
KILLS = {"local": 14, "s3": 13}


@pytest.mark.slow
def test_runs_survive_sigkill_at_random_points(output, launcher, tmp_path, colours_file, request):
    backend = request.node.callspec.id
    rng = random.Random(f"{SEED}-{backend}")
    print(f"kill points: SYNTHVISION_KILL_SEED={SEED}")
    url, options = output
    kills: list[str] = []
    in_round: list[str] = []  # kills in a top-up round's shards

    def rerun(run: Run, argv: list[str], point: str | None) -> int:
        committed = manifests(run.storage)
        code = launcher.run(argv, kill_at=point)
        assert code in (KILLED, 0), f"{point}: exit {code}\n{tail(launcher.logs / f'cli-{launcher.count:03d}.log')}"
        check_visible(run.storage)
        after = manifests(run.storage)
        assert {name: after.get(name) for name in committed} == committed  # committed work is never redone
        if code == KILLED:
            kills.append(point)
        return code

    # the pipeline, killed again and again; when a run gets through, a fresh output, until enough kills landed
    for attempt in itertools.count():
        config_path = write_config(tmp_path / f"config-{attempt}.yaml", f"{url}-{attempt}", options, colours_file)
        run = Run(load_config(config_path))
        while len(kills) < KILLS[backend] - 2 and (points := pipeline_points(run, rng)):
            # the earliest kind of point not yet killed at comes first, so that every kind is
            # covered before the work passes it (once a top-up round is recorded, a point in its
            # shards first); then any point
            fresh = [point for point in points if point.split(":")[0] not in {kill.split(":")[0] for kill in kills}]
            shards = [point for point in points if point.startswith(("generate.", "score."))] if run.top_ups else []
            point = shards[0] if shards and not in_round else fresh[0] if fresh else rng.choice(points)
            if rerun(run, ["run", config_path], point) == KILLED and point in shards:
                in_round.append(point)
        assert rerun(run, ["run", config_path], None) == 0
        check_complete(run)
        if len(kills) >= KILLS[backend] - 2:
            break

    # pre-training, killed mid-step and between a checkpoint's tensors and its `latest.json`
    steps = 2 * -(-run.num_images // 4)  # 2 epochs of batches of 4: 20 images with the top-up round, 10 steps
    for point in (f"pretrain.step:{rng.randint(2, steps - 1)}", f"checkpoint.before_latest:{rng.randint(1, 2)}"):
        assert rerun(run, ["pretrain", config_path], point) == KILLED, point
    resume_at = checkpoint_step(run)
    assert rerun(run, ["pretrain", config_path], None) == 0
    report = run.storage.read_json("pretrain/report.json")
    assert report["resumed_from_step"] == resume_at and report["steps"] == steps

    assert {kill.split(":")[0] for kill in kills} == set(failpoints.POINTS), kills
    assert in_round, kills
    TALLY.kills += len(kills)
    print(f"{backend}: survived {len(kills)} kills in {attempt + 1} run(s): {', '.join(kills)}")


@pytest.mark.slow
def test_a_run_killed_by_sigkill_is_marked_crashed_and_linked_from_its_resumption(launcher, tmp_path, colours_file):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.fanout import artifact_key
    from synthvision.run import open_run

    config_path = write_config(tmp_path / "config.yaml", str(tmp_path / "run"), {}, colours_file)
    config = load_config(config_path, ["run_name=crashed"])
    config_path = tmp_path / "crashed.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert launcher.run(["run", str(config_path)], kill_at="generate.before_manifest:2") == KILLED
    assert launcher.run(["run", str(config_path)]) == 0
    log = tail(launcher.logs / f"cli-{launcher.count:03d}.log", 200_000)

    with get_client(sync_client=True) as client:
        first, second = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name={"any_": ["crashed", "crashed-run-2"]}), sort=FlowRunSort.START_TIME_ASC
        )
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [first.id]}))
        waves = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [child.id for child in children]})
        )
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [first.id, *(run.id for run in children + waves)]})
        )
        (resumes,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(open_run(config), "resumes")]))
        )
    # the killed run and the sub-flows it was in (the generate stage and its wave) no longer show Running
    assert first.state.name == "Crashed" and second.state.is_completed()
    assert (first.name, second.name) == ("crashed", "crashed-run-2")  # the rerun is told apart by name
    assert {run.name: run.state.name for run in children + waves} == {
        "crashed-prompts": "Completed",
        "crashed-generate": "Crashed",
        "crashed-generate-wave-0000": "Crashed",
    }
    assert not [task.name for task in tasks if task.state.type.value in ("RUNNING", "PENDING")]
    assert "Crashed" in {task.state.name for task in tasks}  # the shard it was killed in
    assert "resumes its work" in first.state.message and second.name in first.state.message
    # the new run names the one it resumes, in its logs and an artifact linking to it
    assert f"resuming flow run crashed ({first.id}" in log or "resuming flow run crashed (http" in log, log[-3000:]
    assert resumes.flow_run_id == second.id and str(first.id) in resumes.data
