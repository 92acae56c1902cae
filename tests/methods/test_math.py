"""Filter, loss and head math against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from synthvision.core.learning_config import TrainingConfig
from synthvision.methods.classifier_tuning import predict, top1, tune_classifier, zero_shot_head
from synthvision.methods.filtering import clip_filter, filter_threshold, softmax, zero_shot_logits
from synthvision.methods.losses import Loss


def test_softmax_and_cf_threshold():
    probs = softmax(np.array([[0.0, math.log(3.0)], [math.log(4.0), 0.0]]))
    np.testing.assert_allclose(probs, [[0.25, 0.75], [0.8, 0.2]])
    assert filter_threshold(4, None) == 0.25 and filter_threshold(4, 0.6) == 0.6
    # sample 0 is labelled 0 (p=0.25), sample 1 labelled 0 (p=0.8): only the second passes 1/N=0.5
    assert clip_filter(probs, np.array([0, 0]), threshold=0.5).tolist() == [False, True]
    assert clip_filter(probs, np.array([0, 0]), threshold=0.25).tolist() == [True, True]  # >= keeps the boundary


def test_zero_shot_logits_are_scaled_cosines():
    classes = np.array([[1.0, 0.0], [0.0, 1.0]])
    logits = zero_shot_logits(np.array([[3.0, 4.0]]), classes, logit_scale=100.0)
    np.testing.assert_allclose(logits, [[60.0, 80.0]])


def test_sce_against_hand_computed_value():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # log_softmax = [log .25, log .75]
    teacher = torch.tensor([[2 * math.log(2.0), 0.0]])  # softmax(teacher / 2) = [2/3, 1/3]
    labels = torch.tensor([1])
    ce = -math.log(0.75)
    soft = -(2 / 3 * math.log(0.25) + 1 / 3 * math.log(0.75))
    assert Loss("sce", temperature=2.0)(logits, labels, teacher).item() == pytest.approx(
        0.5 * ce + 0.5 * soft, rel=1e-6
    )
    assert Loss("ce")(logits, labels, teacher).item() == pytest.approx(ce, rel=1e-6)


def test_label_smoothing_and_hard_pseudo_labels_against_hand_computed_values():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = [.25, .75]
    teacher = torch.tensor([[2 * math.log(2.0), 0.0]])  # CLIP's top class: 0
    labels = torch.tensor([1])
    # smoothing 0.1: 0.9 * -log .75 + 0.1 * mean(-log .25, -log .75)
    smoothed = 0.9 * -math.log(0.75) + 0.1 * (-math.log(0.25) - math.log(0.75)) / 2
    assert Loss("ce", label_smoothing=0.1)(logits, labels, teacher).item() == pytest.approx(smoothed, rel=1e-6)
    # hard pseudo-labels: the soft term is CE against class 0, the teacher's argmax (no temperature)
    hard = 0.5 * -math.log(0.25) + 0.5 * -math.log(0.75)
    assert Loss("sce", hard_pseudo_labels=True)(logits, labels, teacher).item() == pytest.approx(hard, rel=1e-6)


def test_few_shot_parts_train_as_the_papers_code():
    from synthvision.core.learning_config import FewShotConfig
    from synthvision.methods.fewshot import part_losses

    real, synthetic = part_losses(FewShotConfig(train_set="pool.tar"))
    assert (real.name, synthetic.name, synthetic.temperature) == ("ce", "sce", 2.0)  # synthetic: 0.5 soft + 0.5 CE
    real, synthetic = part_losses(FewShotConfig(train_set="pool.tar", label_smoothing=0.1, hard_pseudo_labels=True))
    assert real.label_smoothing == synthetic.label_smoothing == 0.1 and not real.hard_pseudo_labels
    assert synthetic.hard_pseudo_labels


def test_head_starts_as_clip_zero_shot_classifier():
    rng = np.random.default_rng(0)
    classes = rng.normal(size=(3, 8))
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    features = rng.normal(size=(5, 8)).astype(np.float32)
    head = zero_shot_head(classes, logit_scale=50.0)
    with torch.no_grad():
        from synthvision.methods.classifier_tuning import normalize

        np.testing.assert_allclose(
            head(normalize(features)).numpy(), zero_shot_logits(features, classes, 50.0), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("loss", ["ce", "sce"])
def test_tuning_fixes_a_wrong_zero_shot_head(loss):
    rng = np.random.default_rng(0)
    centers = np.eye(4, 16)
    labels = np.repeat(np.arange(4), 50)
    features = (centers[labels] + 0.1 * rng.normal(size=(200, 16))).astype(np.float32)
    wrong = centers[[1, 2, 3, 0]]  # zero-shot text embeddings that point at the wrong classes
    head = zero_shot_head(wrong, logit_scale=1.0)
    assert top1(predict(head, features), labels) == 0.0
    teacher = np.eye(4)[labels].astype(np.float32) * 5  # a teacher that knows the right classes
    config = TrainingConfig(loss=loss, epochs=30, batch_size=32, lr=2e-2, device="cpu")
    result = tune_classifier(features, labels, teacher, head, config, seed=0)
    assert top1(predict(result.head, features), labels) == 100.0
    assert result.steps == 30 * 7
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    # each epoch evaluated when asked (the paper's code keeps the best): the training is the same
    watched = tune_classifier(
        features,
        labels,
        teacher,
        zero_shot_head(wrong, 1.0),
        config,
        seed=0,
        evaluate=lambda head: top1(predict(head, features), labels),
    )
    torch.testing.assert_close(watched.head.weight, result.head.weight)
    assert len(watched.epoch_top1) == 30 and watched.epoch_top1[-1] == 100.0 and result.epoch_top1 == []


def test_cf_keeps_a_fixed_budget_per_class():
    from synthvision.methods.filtering import per_class_budget

    labels = np.array([0] * 6 + [1] * 4 + [2] * 2)
    probs = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.5, 0.45, 0.1, 0.3, 0.9, 0.1])
    passed = probs >= 0.4
    keep = per_class_budget(labels, probs, passed, budget=3, seed=0)
    # class 0: 4 pass, 3 of them drawn at random (never a failing one)
    assert keep[:6].sum() == 3 and not keep[4:6].any()
    # class 1: 2 pass (0.5, 0.45), fewer than 3: the 3 most confident, the failing 0.3 included
    assert keep[6:10].tolist() == [True, True, False, True]
    # class 2: only 2 images: both kept, passing or not
    assert keep[10:].all()
    assert np.array_equal(keep, per_class_budget(labels, probs, passed, 3, seed=0))  # seeded
    draws = {tuple(per_class_budget(labels, probs, passed, 3, seed=s)[:6]) for s in range(20)}
    assert len(draws) > 1  # another seed, another draw among class 0's passing images


def test_the_first_images_of_each_class_in_their_order():
    from synthvision.methods.filtering import first_per_class

    labels = np.array([2, 0, 0, 1, 0, 2, 2, 1, 0])
    assert first_per_class(labels, 2).tolist() == [True, True, True, True, False, True, False, True, False]
    assert first_per_class(labels, 9).all()  # more than a class has: all of it
