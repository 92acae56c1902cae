"""Quota mode in the library: rounds of generation until each class has its quota passing CF,
against a scorer whose pass rate differs per class."""

from __future__ import annotations

import numpy as np
import pytest

from synthvision.core.allocation import quota_topup
from synthvision.core.errors import DataError
from synthvision.run import Run
from synthvision.stages import quotas, score
from synthvision.stages.units import ensure
from synthvision.storage.top_ups import read_rounds
from tests.conftest import tiny_config

QUOTA = {"shards": {"top_up": {"max_per_class": 16, "min_pass_rate": 0.25}}, "filter": {"per_class": 4}}


def pass_by_class(probs, labels, threshold):
    """Red always passes, green every other image (its 1st, 3rd, ... of a shard), blue never."""
    seen = np.zeros(3, int)
    passed = []
    for label in labels:
        passed.append(label == 0 or (label == 1 and seen[1] % 2 == 0))
        seen[label] += 1
    return np.asarray(passed, bool)


def run_in_rounds(run: Run) -> list:
    """What `make_data` does, without Prefect: every planned shard generated and scored, then a round."""
    decided = []
    ensure(run, "prompts")
    while True:
        for index in range(run.num_shards):
            ensure(run, "generate", index)
            ensure(run, "score", index)
        top_up = quotas.next_round(run)
        if top_up is None:
            return decided
        decided.append(top_up)


def test_short_classes_get_rounds_at_their_pass_rate_until_the_quota_or_the_cap(tmp_path, colours_file, monkeypatch):
    monkeypatch.setattr(score, "clip_filter", pass_by_class)
    run = Run(tiny_config(tmp_path / "run", colours_file, **QUOTA))
    rounds = run_in_rounds(run)
    # the first round (4 per class, shards of 4 dealt red, green, blue, ...) passes 4 red, 3 green
    # (the first of each shard's greens: 1, 1 and 1), no blue. Green lacks 1 at 3/4: ceil(4/3) = 2
    # more; blue lacks 4 at the floor rate 1/4: 16, capped at 16 - 4 = 12
    assert [(r.number, r.images, r.passed, r.generated) for r in rounds] == [(1, (0, 2, 12), (4, 3, 0), (4, 4, 4))]
    # round 1 deals green, blue, green, blue, blue, ...: its first shard's two greens pass one
    final = quotas.standing(run)
    assert (final.generated, final.scored, final.passed, final.short, final.rounds) == (
        (4, 6, 16),
        (4, 6, 16),
        (4, 4, 0),
        (0, 0, 4),
        1,
    )
    assert run.num_shards == 3 + 4 and read_rounds(run.storage, run.hashes["generate"]) == tuple(rounds)
    # what was recorded is what the policy says of the standing before it
    assert list(rounds[0].images) == quota_topup(rounds[0].passed, rounds[0].generated, 4, 16, 0.25)


def test_the_same_config_twice_makes_the_same_bytes_and_top_up_seeds_are_new(tmp_path, colours_file, monkeypatch):
    monkeypatch.setattr(score, "clip_filter", pass_by_class)
    runs = [Run(tiny_config(tmp_path / name, colours_file, **QUOTA)) for name in ("a", "b")]
    for run in runs:
        run_in_rounds(run)
    shards = [[run.commits.shards("generate")[run.shard(i).name].sha256 for i in range(7)] for run in runs]
    assert shards[0] == shards[1]
    first, top_up = runs[0].shard(0).samples, [s for i in range(3, 7) for s in runs[0].shard(i).samples]
    assert not {s.seed for s in first} & {s.seed for s in top_up}
    assert len({s.key for s in top_up}) == 14 and min(s.key for s in top_up) == f"{12:010d}"


def test_a_round_is_decided_on_every_planned_shard_s_scores_never_on_part(tmp_path, colours_file):
    run = Run(tiny_config(tmp_path / "run", colours_file, **QUOTA))
    ensure(run, "prompts")
    for index in range(run.num_shards):
        ensure(run, "generate", index)
    ensure(run, "score", 0)
    with pytest.raises(DataError, match="shard shard-00001 is not scored yet"):
        quotas.next_round(run)


def test_a_process_that_read_the_plan_before_a_round_finds_the_round_s_shards(tmp_path, colours_file, monkeypatch):
    monkeypatch.setattr(score, "clip_filter", pass_by_class)
    config = tiny_config(tmp_path / "run", colours_file, **QUOTA)
    deciding, worker = Run(config), Run(config)
    ensure(deciding, "prompts")
    assert worker.plan.num_shards == 3  # a worker process that planned before the round
    run_in_rounds(deciding)
    assert worker.shard(6).name == "shard-00006" and len(worker.shard(6).samples) == 2


def test_adaptive_rounds_spend_the_budget_by_weakness(tmp_path, colours_file, monkeypatch):
    """CLIP's confidence in red, green and blue images set to 0.9, 0.5 and 0.2: weakness 0.1, 0.5, 0.8."""
    real = score._per_class
    confidence = np.array([0.9, 0.5, 0.2])
    monkeypatch.setattr(score, "_per_class", lambda labels, passed, _, n: real(labels, passed, confidence[labels], n))
    top_up = {"policy": "adaptive", "budget_per_class": 10, "max_per_class": 16, "max_rounds": 2}
    run = Run(tiny_config(tmp_path / "run", colours_file, shards={"top_up": top_up}))
    rounds = run_in_rounds(run)
    # 30 images in all, 12 in the first round: 18 over 2 rounds, 9 each. 9 x (0.1, 0.5, 0.8) / 1.4 is
    # 0.64, 3.21, 5.14: floors 0, 3, 5 and the one left to red's largest remainder
    assert [(r.policy, r.images, r.weakness) for r in rounds] == [("adaptive", (1, 3, 5), (0.1, 0.5, 0.8))] * 2
    now = quotas.standing(run)
    assert now.generated == (6, 10, 14) and sum(now.generated) == 3 * 10
    assert [
        (row["class"], row["generated"], row["weakness (confidence)"])
        for row in now.rows(run.label_space.classes, "adaptive")
    ] == [
        ("red", 6, "0.100"),
        ("green", 10, "0.500"),
        ("blue", 14, "0.800"),
    ]


def test_the_few_shot_signal_gives_most_to_the_class_its_real_shots_show_the_data_teaches_worst(
    tmp_path, colours_file, monkeypatch
):
    """The synthetic data stood in by the real pool's own images with every blue one labelled red: a
    head trained on it calls blue shots red, so blue is the weakest class and gets most of each round."""
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.stages.fewshot import encoded_shots
    from synthvision.storage.store import Storage

    label_space = Run(tiny_config(tmp_path / "pool-run", colours_file)).label_space
    pool = write_colour_test_set(Storage(str(tmp_path / "pool")), "train", label_space, 3, 32, seed=99)

    def blue_labelled_red(run):
        images = encoded_shots(run, 3)  # the whole pool: 3 per class
        labels = np.where(images.labels == 2, 0, images.labels)
        teacher = np.zeros((len(labels), 3), np.float32)
        return score.SyntheticData(images.features, labels, teacher, [], len(labels), len(labels))

    monkeypatch.setattr(score, "read_synthetic", blue_labelled_red)
    top_up = {"policy": "adaptive", "budget_per_class": 10, "max_per_class": 16, "max_rounds": 2}
    fewshot = {"train_set": pool, "shots": [2], "synthetic_loss": "ce", "synthetic_batch_size": 4, "phase_lr": 0.05}
    run = Run(
        tiny_config(
            tmp_path / "run",
            colours_file,
            shards={"top_up": {**top_up, "signal": "fewshot", "shots": 2}},
            fewshot=fewshot,
        )
    )
    rounds = run_in_rounds(run)
    assert [(r.signal, r.weakness) for r in rounds] == [
        ("fewshot", rounds[0].weakness)
    ] * 2  # the same data: the same signal
    red, green, blue = rounds[0].weakness
    assert blue > max(red, green) + 0.2, rounds[0].weakness  # 0.11, 0.54, 0.99 here
    assert [r.images[2] for r in rounds] == [max(r.images) for r in rounds] and sum(rounds[0].images) == 9
    assert quotas.fewshot_weakness(run) == quotas.fewshot_weakness(run)  # measured again: the same numbers
    # status shows the weakness the last round was split by
    assert [
        row["weakness (fewshot)"] for row in quotas.standing(run).rows(label_space.classes, "adaptive", "fewshot")
    ] == [f"{value:.3f}" for value in rounds[-1].weakness]
