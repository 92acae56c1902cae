"""Few-shot learning with synthetic data: shot sampling, real filtering, the training strategies,
real guidance's budget and config, BatchNorm and encoder tuning. (The fewshot stage: tests/stages/.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from synthvision.core.errors import DataError
from synthvision.core.learning_config import FewShotConfig
from synthvision.methods.fewshot import Part, real_filter, sample_shots, train_few_shot


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


def test_mix_as_the_paper_code_runs_it_steps_in_batches_of_128_on_its_odd_cosine():
    real, synthetic = Part.cached(*_data(20, 3, 0)), Part.cached(*_data(300, 3, 1))
    config = CONFIG.model_copy(update={"mix_schedule": "paper_code", "mix_lr": 1e-3})
    result = train_few_shot("mix", _head(), real, synthetic, config, seed=0)
    # each epoch one pass over the 300 synthetic in batches of 128, with 128 (all 20) real alongside
    assert result.steps == [(20, 128), (20, 128), (20, 44)] * 2
    # its cosine counts ceil(300 / 512) = 1 step per epoch, 2 in all: step i + e at epoch e, past the end
    # within each epoch: 0.5 (1 + cos(pi s / 2)) for s = 0, 1, 2 and then 1, 2, 3
    assert result.lrs == pytest.approx([1e-3, 0.5e-3, 0.0, 0.5e-3, 0.0, 0.5e-3], abs=1e-12)
    synthvision = train_few_shot("mix", _head(), real, synthetic, CONFIG.model_copy(update={"mix_lr": 1e-3}), seed=0)
    assert set(synthvision.steps) == {(4, 8), (4, 4)} and len(synthvision.steps) == 2 * 38  # 32 / 512 scaled down
    assert synthvision.lrs[0] == pytest.approx(1e-3) and synthvision.lrs[-1] < 1e-5  # one cosine over all steps


def test_class_weakness_is_one_minus_the_mean_probability_of_the_class_on_its_images():
    from synthvision.methods.classifier_tuning import per_class_top1
    from synthvision.methods.fewshot import class_weakness

    head = torch.nn.Linear(2, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
        head.bias.zero_()
    # (3, 0) is normalised to (1, 0): logits (2, 0, 0), so p = e^2 / (e^2 + 2) for the class it points at
    features = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]], np.float32)
    labels = np.array([0, 0, 1])
    high, low = np.exp(2) / (np.exp(2) + 2), 1 / (np.exp(2) + 2)
    weakness = class_weakness(head, features, labels, 3)
    assert np.allclose(weakness, [1 - (high + low) / 2, 1 - low, 1.0], atol=1e-6)  # no image of class 2: 1
    assert per_class_top1(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]), 3) == [50.0, 50.0, None]
