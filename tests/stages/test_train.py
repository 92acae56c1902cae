"""The train stage: CT on the scored shards, its head and report committed, and what it shows."""

from __future__ import annotations

import json

from safetensors.torch import load

from synthvision.run import Run
from synthvision.stages import train
from synthvision.stages.units import ensure
from tests.helpers import generated_run


def test_train_commits_its_head_and_report_and_shows_both(make_config):
    run = generated_run(make_config(), scored=True)
    report, done_now = ensure(run, "train")
    assert done_now and report.config_hash == run.hashes["train"]
    assert (report.data.synthetic_images, report.evaluation.test_images) == (12, 9)
    head = load(run.storage.read_bytes("train/head.safetensors"))
    assert head["weight"].shape[0] == head["bias"].shape[0] == 3  # one row per class
    assert json.loads(run.storage.read_bytes("train/report.json"))["config_hash"] == run.hashes["train"]
    assert train.committed(run) == report and ensure(run, "train") == (report, False)
    busy = json.loads(run.storage.read_bytes("train/report.json"))["busy_s"]  # its work's seconds, for cost
    assert 0 < busy and {row.stage: row.busy_s for row in run.status()}["train"] == busy

    page = train.page(run, report, done_now)
    assert page.summary is report
    assert [(item.key, item.what) for item in page.items] == [
        ("train-report", "train report"),
        ("train", f"top-1 on {report.evaluation.test_set}"),
    ]
    assert "CLIP zero-shot" in page.items[0].markdown
    evaluation = report.evaluation
    assert page.items[1].table == [
        {"model": "CLIP zero-shot", "top1": evaluation.zero_shot_top1},
        {"model": "CLIP + synthetic (CT)", "top1": evaluation.tuned_top1},
    ]
    zero_shot, tuned, gain = evaluation.zero_shot_top1, evaluation.tuned_top1, evaluation.gain
    assert report.line() == f"top-1: zero-shot {zero_shot:.2f}%, tuned {tuned:.2f}% ({gain:+.2f})"


def test_first_per_class_trains_on_a_cut_of_the_same_scores(make_config):
    everything = generated_run(make_config(filter={"clip_filter": False}), scored=True)
    cut = Run(make_config(filter={"clip_filter": False, "first_per_class": 2}))
    assert cut.hashes["score"] == everything.hashes["score"] and cut.hashes["train"] != everything.hashes["train"]
    report, done_now = ensure(cut, "train")
    assert done_now and (report.data.synthetic_images, report.data.trained_on) == (12, 6)  # 3 classes x 2
