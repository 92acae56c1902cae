"""The diversity measures against values computed by hand on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from synthvision.methods.diversity import (
    frechet_distance,
    mean_pairwise_distance,
    near_duplicate_rate,
    near_duplicates,
    vendi_score,
)


def test_the_vendi_score_counts_distinct_images():
    assert vendi_score(np.tile([[3.0, 4.0, 0.0]], (5, 1))) == pytest.approx(1.0)  # 5 identical: one image
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)  # 4 orthogonal: four
    # two identical and one orthogonal: K/n has eigenvalues 2/3 and 1/3 -> exp(H) = 1.8899
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    entropy = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    assert vendi_score(x) == pytest.approx(np.exp(entropy)) == pytest.approx(1.8899, abs=1e-4)
    assert vendi_score(np.zeros((0, 3))) == 0.0


def test_the_mean_pairwise_distance_over_distinct_pairs():
    assert mean_pairwise_distance(np.tile([[1.0, 1.0]], (3, 1))) == pytest.approx(0.0)
    assert mean_pairwise_distance(np.eye(3)) == pytest.approx(1.0)
    # three vectors at 0, 60 and 120 degrees: cosines 0.5, -0.5, 0.5 -> mean 1/6 -> distance 5/6
    angles = np.radians([0, 60, 120])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1) * [[2.0], [1.0], [5.0]]  # lengths do not matter
    assert mean_pairwise_distance(x) == pytest.approx(5 / 6)
    assert mean_pairwise_distance(np.ones((1, 2))) == 0.0


@pytest.mark.parametrize("block", [1, 2, 3, 100])
def test_near_duplicates_keep_the_first_of_each_group_whatever_the_block(block):
    x = np.array(
        [
            [1.0, 0.0, 0.0],  # 0 kept
            [0.0, 1.0, 0.0],  # 1 kept
            [0.99, 0.14, 0.0],  # 2: cos 0.990 with 0 -> duplicate of 0
            [0.0, 0.0, 1.0],  # 3 kept
            [0.0, 0.7, 0.7],  # 4: cos 0.707 with 1 and 3 -> kept at 0.95
            [0.01, 0.0, 1.0],  # 5: duplicate of 3
            [0.0, 1.0, 0.0],  # 6: duplicate of 1
        ]
    )
    assert near_duplicates(x, 0.95, block=block).tolist() == [-1, -1, 0, -1, -1, 3, 1]
    assert near_duplicate_rate(x, 0.95) == pytest.approx(3 / 7)
    assert near_duplicates(x, 0.7, block=block).tolist() == [-1, -1, 0, -1, 1, 3, 1]


def test_the_frechet_distance_by_hand():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a shift moves only the means: |shift|^2
    assert frechet_distance(a, a + [1.0, 2.0, 2.0]) == pytest.approx(9.0, abs=1e-6)
    # a scale by s: covariances S and s^2 S -> Tr(S) (1 + s^2 - 2 s) = Tr(S) (1 - s)^2
    assert frechet_distance(a, 3 * a) == pytest.approx(
        np.trace(np.cov(a, rowvar=False)) * 4 + np.sum((2 * a.mean(0)) ** 2)
    )
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(a[:1], a)


def test_the_near_duplicate_filter_works_within_each_class_on_the_kept_rows():
    from synthvision.methods.diversity import drop_near_duplicates

    x = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [1.0, 0.0], [1.0, 0.02], [0.0, 1.0]])
    labels = np.array([0, 0, 0, 1, 0, 1])
    keep = np.array([True, True, True, True, True, False])  # row 5 was dropped by CF already
    # class 0: rows 1 and 4 repeat row 0; class 1: row 3 is alone among the kept (row 5 is not kept)
    assert drop_near_duplicates(x, labels, keep, 0.99).tolist() == [True, False, True, True, False, False]
