"""Few-shot learning with synthetic data: shot sampling, real filtering, the training strategies, and
the flow on tiny models with a rendered real pool."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from synthvision.core.errors import DataError
from synthvision.core.learning_config import FewShotConfig
from synthvision.methods.fewshot import Part, real_filter, sample_shots, train_few_shot
from synthvision.stages.generate import guidance_shots
from synthvision.stages.units import ensure


def test_shots_are_per_class_deterministic_and_nested():
    labels, names = np.array([0, 1, 2] * 10 + [0, 1]), ("red", "green", "blue")
    one, two, again = (sample_shots(labels, m, names, seed=7) for m in (1, 2, 2))
    assert np.array_equal(two, again)
    assert np.bincount(labels[two], minlength=3).tolist() == [2, 2, 2]
    assert set(one) <= set(two)  # the 1-shot set is inside the 2-shot set
    assert not np.array_equal(sample_shots(labels, 2, names, seed=8), two)
    with pytest.raises(DataError, match="fewshot.train_set: class 'blue' has 10 image\\(s\\), fewer than 11 shots"):
        sample_shots(labels, 11, names, seed=0)


def test_real_filter_drops_exactly_the_images_nearest_to_other_classes():
    # real shots: class 0 along x, class 1 along y, class 2 along z (two shots each, slightly apart)
    real = np.array([[1, 0.1, 0], [1, -0.1, 0], [0.1, 1, 0], [-0.1, 1, 0], [0, 0.1, 1], [0, -0.1, 1]], np.float32)
    real_labels = np.array([0, 0, 1, 1, 2, 2])
    syn = np.array(
        [
            [2, 0.1, 0],  # class 0, near class 0: kept
            [0.1, 3, 0],  # class 0, near class 1: dropped
            [0, 0, 1],  # class 1, near class 2: dropped
            [0.2, 1, 0.1],  # class 1, near class 1: kept
            [1, 0, 1.01],  # class 2, between 0 and 2, nearer 2: kept
            [1.01, 0, 1],  # class 2, between 0 and 2, nearer 0: dropped with k=1 and k=2
        ],
        np.float32,
    )
    syn_labels = np.array([0, 0, 1, 1, 2, 2])
    assert real_filter(syn, syn_labels, real, real_labels, k=1).tolist() == [True, False, False, True, True, False]
    assert real_filter(syn, syn_labels, real, real_labels, k=2).tolist() == [True, False, False, True, True, False]
    # k = 4: the last image's 4 nearest are two of class 0 and two of class 2: half is not a majority, kept
    assert real_filter(syn, syn_labels, real, real_labels, k=4)[5]


def _data(n: int, classes: int, seed: int, dim: int = 8):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return rng.normal(size=(n, dim)).astype(np.float32) + np.eye(classes, dim, dtype=np.float32)[labels] * 3, labels


def _head(classes: int = 3, dim: int = 8) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(dim, classes)


CONFIG = FewShotConfig(train_set="unused", real_batch_size=4, synthetic_batch_size=8, epochs=2, device="cpu")


def test_mix_training_sees_a_real_and_a_synthetic_batch_every_step():
    real, synthetic = Part.cached(*_data(6, 3, 0)), Part.cached(*_data(20, 3, 1))
    result = train_few_shot("mix", _head(), real, synthetic, CONFIG, seed=0)
    assert len(result.steps) == 2 * 3  # epochs over the synthetic data: 2 x ceil(20 / 8)
    assert all(r > 0 and s > 0 for r, s in result.steps)
    assert sorted({r for r, _ in result.steps}) == [2, 4] and sorted({s for _, s in result.steps}) == [4, 8]


def test_phase_wise_and_real_only_strategies_order_their_batches():
    real, synthetic = Part.cached(*_data(6, 3, 0)), Part.cached(*_data(20, 3, 1))
    syn_first = train_few_shot("syn_then_real", _head(), real, synthetic, CONFIG, seed=0).steps
    assert [s > 0 for _, s in syn_first] == [True] * 6 + [False] * 4  # 2 x 3 synthetic steps, then 2 x 2 real
    assert [r > 0 for r, _ in syn_first] == [False] * 6 + [True] * 4
    real_first = train_few_shot("real_then_syn", _head(), real, synthetic, CONFIG, seed=0).steps
    assert [r > 0 for r, _ in real_first] == [True] * 4 + [False] * 6
    assert all(s == 0 for _, s in train_few_shot("real_only", _head(), real, synthetic, CONFIG, seed=0).steps)
    assert all(r == 0 and s > 0 for r, s in train_few_shot("syn_only", _head(), real, synthetic, CONFIG, seed=0).steps)


def test_training_on_separable_shots_learns_them():
    real = Part.cached(*_data(30, 3, 0))
    head = train_few_shot(
        "real_only", _head(), real, None, CONFIG.model_copy(update={"epochs": 30, "phase_lr": 0.05}), seed=0
    ).head
    test_x, test_y = _data(60, 3, 5)
    with torch.no_grad():
        accuracy = (
            head(torch.nn.functional.normalize(torch.as_tensor(test_x), dim=-1)).argmax(1).numpy() == test_y
        ).mean()
    assert accuracy > 0.9


def test_few_shot_flow_end_to_end_on_tiny_models(make_config, tmp_path, prefect_server):
    from flows.stages import fewshot_flow
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.run import Run
    from synthvision.stages import fewshot as fewshot_stage
    from synthvision.storage.store import Storage

    pool = write_colour_test_set(
        Storage(str(tmp_path / "pool")), "train", Run(make_config()).label_space, 3, 32, seed=99
    )
    fewshot = {
        "train_set": pool,
        "shots": [2, 1],
        "strategies": ["real_only", "mix", "syn_then_real"],
        "epochs": 2,
        "real_filter": {"enabled": True},
    }
    config = make_config(fewshot=fewshot)
    run = Run(config)
    ensure(run, "prompts")
    for index in range(run.plan.num_shards):
        ensure(run, "generate", index)
        ensure(run, "score", index)
    report = fewshot_flow(config)
    assert [(row.shots, row.strategy) for row in report.results] == [
        (m, s) for m in (1, 2) for s in ("real_only", "mix", "syn_then_real")
    ]
    assert all(0 <= row.top1 <= 100 for row in report.results) and report.test_images == 9
    assert all(
        row.synthetic_used + row.real_filter_dropped == report.synthetic["after_clip_filter"]
        for row in report.results
        if row.strategy != "real_only"
    )
    with run.storage.open("fewshot/accuracy.png") as stream:
        assert Image.open(stream).size[0] > 100
    assert (
        "| shots | CT w. init (real only) | mix | syn -> real |" in run.storage.read_bytes("fewshot/report.md").decode()
    )
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.fanout import artifact_key
    from synthvision.run import open_run

    key = artifact_key(open_run(config), "fewshot-report")
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    # the UI cannot serve accuracy.png from the output: the artifact carries the plot itself
    assert "![accuracy vs shots](data:image/png;base64," in artifact.data and "](accuracy.png)" not in artifact.data
    assert fewshot_stage.committed(Run(config)) == report  # committed: read back as the same report

    overlapping = make_config(fewshot={**fewshot, "train_set": run.test_set_url()})
    with pytest.raises(DataError, match="fewshot.train_set shares 9 image\\(s\\) with the test set"):
        fewshot_stage.few_shot(Run(overlapping))


def test_real_guidance_splits_each_class_budget_over_its_shots():
    from synthvision.core.planning import plan_from_prompts

    plain = plan_from_prompts([0, 1, 2], 3, images_per_class=6, shard_size=9, seed=0)
    guided = plan_from_prompts([0, 1, 2], 3, images_per_class=6, shard_size=9, seed=0, references_per_class=4)
    samples = [guided.sample(g) for g in range(guided.num_images)]
    assert [s.reference for s in samples if s.class_id == 1] == [0, 1, 2, 3, 0, 1]  # image j uses shot j mod M
    assert all(plain.sample(g).reference is None for g in range(plain.num_images))
    assert guided.shard(0).spec_hash != plain.shard(0).spec_hash


def test_real_guidance_config_is_checked():
    from synthvision.core.config import RunConfig

    with pytest.raises(ValueError, match="real guidance from 16 shots: set fewshot.shots to \\[16\\]"):
        RunConfig(fewshot={"train_set": "x", "real_guidance": {"enabled": True}})
    with pytest.raises(ValueError, match="no paper start step for 3 shots"):
        RunConfig(fewshot={"train_set": "x", "shots": [3], "real_guidance": {"enabled": True, "shots": 3}})
    assert (
        RunConfig(
            fewshot={"train_set": "x", "shots": [3], "real_guidance": {"enabled": True, "shots": 3, "start_step": 30}}
        ).fewshot.real_guidance.strength
        == 0.3
    )


def test_guided_shards_start_from_the_class_shots_and_record_them(make_config, tmp_path):
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.datasets.labelled import iter_labelled
    from synthvision.run import Run
    from synthvision.storage.store import Storage
    from synthvision.storage.tars import decode_image, read_samples

    pool = write_colour_test_set(
        Storage(str(tmp_path / "pool")), "train", Run(make_config()).label_space, 4, 16, seed=5
    )
    generator = {
        "backend": "glide",
        "model": "tiny",
        "resolution": 16,
        "glide": {"base_respacing": "20", "upsample": False},
    }

    def shard_samples(**guidance):
        fewshot = {"train_set": pool, "shots": [2], "real_guidance": {"enabled": True, "shots": 2, **guidance}}
        run = Run(make_config(output=tmp_path / str(guidance), generator=generator, fewshot=fewshot))
        ensure(run, "prompts")
        manifest, _ = ensure(run, "generate", 0)
        with run.storage.open(manifest.data_file) as stream:
            return run, list(read_samples(stream, manifest.data_file))

    run, samples = shard_samples()  # 2 shots: t* = 40 of 100
    shots = guidance_shots(run.config)
    by_digest = {ref.digest: (class_id, ref.image) for class_id, refs in enumerate(shots) for ref in refs}
    assert [len(refs) for refs in shots] == [2, 2, 2]
    pool_digests = {digest for _, _, digest in iter_labelled(pool, "auto", run.label_space)}
    distances = {}
    for strength in (0.1, 1.0):
        _, guided = shard_samples(start_step=round(strength * 100))
        distances[strength] = []
        for sample in guided:
            meta = json.loads(sample["json"])
            assert meta["reference"] in pool_digests and by_digest[meta["reference"]][0] == meta["class_id"]
            assert meta["real_guidance_strength"] == strength
            reference = np.asarray(by_digest[meta["reference"]][1].convert("RGB"), np.float32)
            distances[strength].append(np.abs(np.asarray(decode_image(sample["png"]), np.float32) - reference).mean())
    assert np.mean(distances[0.1]) < 0.5 * np.mean(distances[1.0])  # little noise: near the reference
    assert {json.loads(s["json"])["reference"] for s in samples} <= pool_digests


def _bn_stats(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if k.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize(
    ("batch_norm", "tune", "stats_change", "weights_change"),
    [("frozen", True, False, True), ("train", False, True, False), ("train", True, True, True)],
)
def test_batch_norm_and_encoder_tuning_settings(batch_norm, tune, stats_change, weights_change):
    from synthvision.core.data_config import ClipConfig
    from synthvision.methods.fewshot import Encoder
    from synthvision.models.clip import load_clip

    clip = load_clip(ClipConfig(model="tiny-rn"))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(6)]
    encoder = Encoder(clip.model.visual, clip.preprocess, torch.device("cpu"), batch_norm, tune)
    stats, weights = _bn_stats(encoder.tower), encoder.tower.conv1.weight.clone()
    real = Part.images(images, np.array([0, 1, 2] * 2), encoder)
    config = CONFIG.model_copy(update={"batch_norm": batch_norm, "tune_encoder": tune, "encoder_lr": 0.1})
    train_few_shot("real_only", torch.nn.Linear(32, 3), real, None, config, seed=0, encoder=encoder)
    after = _bn_stats(encoder.tower)
    assert any(not torch.equal(stats[k], after[k]) for k in stats) is stats_change
    assert (not torch.equal(weights, encoder.tower.conv1.weight)) is weights_change
    assert _bn_stats(clip.model.visual).keys() == stats.keys() and all(
        torch.equal(v, _bn_stats(clip.model.visual)[k]) for k, v in stats.items()
    )  # the shared model is untouched


def test_few_shot_with_batch_norm_in_train_mode_runs_the_tower_on_images(make_config, tmp_path, monkeypatch):
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.methods.fewshot import Encoder
    from synthvision.run import Run
    from synthvision.stages import fewshot as fewshot_stage
    from synthvision.storage.store import Storage

    pool = write_colour_test_set(
        Storage(str(tmp_path / "pool")), "train", Run(make_config()).label_space, 2, 32, seed=99
    )
    fewshot = {"train_set": pool, "shots": [1], "strategies": ["mix"], "epochs": 2, "batch_norm": "train"}
    run = Run(make_config(clip={"model": "tiny-rn"}, fewshot=fewshot))
    ensure(run, "prompts")
    for index in range(run.plan.num_shards):
        ensure(run, "generate", index)
        ensure(run, "score", index)
    encoded = []
    monkeypatch.setattr(
        Encoder,
        "features",
        lambda self, images, original=Encoder.features: encoded.append(len(images)) or original(self, images),
    )
    report = fewshot_stage.few_shot(run)
    assert report.encoder == {"batch_norm": "train", "tuned": False}
    row = report.results[0]
    assert row.steps == 2  # 2 epochs of one synthetic batch (at most 12 images, batches of 512)
    # every step runs the tower on its real batch (3 shots) and synthetic batch, then the 9 test images
    assert sum(encoded) == 2 * (3 + row.synthetic_used) + 9
