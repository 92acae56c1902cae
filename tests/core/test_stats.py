"""The experiment report's maths against values worked by hand (t quantiles from tables)."""

from __future__ import annotations

import math

import pytest

from synthvision.core.stats import compare, spread

T_975_4 = 2.7764451  # Student t, 97.5% quantile, 4 degrees of freedom (printed tables: 2.776)
T_975_2 = 4.3026527  # 2 degrees of freedom (tables: 4.303)


def test_spread_is_the_mean_the_sample_deviation_and_the_t_interval():
    result = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert result.n == 5 and result.mean == 3.0
    assert result.std == pytest.approx(math.sqrt(2.5))  # squares 4+1+0+1+4 = 10, over n - 1 = 4
    half = T_975_4 * math.sqrt(2.5) / math.sqrt(5)  # 1.9632
    assert result.low == pytest.approx(3.0 - half, abs=1e-6) and result.high == pytest.approx(3.0 + half, abs=1e-6)
    assert result.half_width == pytest.approx(1.9632432, abs=1e-6)


def test_one_value_has_no_interval():
    result = spread([78.6])
    assert (result.mean, result.std, result.low, result.high) == (78.6, None, None, None)
    with pytest.raises(ValueError):
        spread([])


def test_a_paired_difference_whose_interval_excludes_zero_is_a_verdict():
    # differences 2, 2, 1: mean 5/3, sd sqrt(1/3), half width t(2) * sd / sqrt(3) = 4.3027 / 3 = 1.4342
    result = compare([3.0, 4.0, 5.0], [1.0, 2.0, 4.0])
    assert result.difference.mean == pytest.approx(5 / 3)
    assert result.difference.low == pytest.approx(5 / 3 - T_975_2 / 3, abs=1e-6)
    assert result.difference.high == pytest.approx(5 / 3 + T_975_2 / 3, abs=1e-6)
    assert result.verdict == "better"
    assert compare([3.0, 4.0, 5.0], [1.0, 2.0, 4.0], higher_is_better=False).verdict == "worse"
    assert compare([1.0, 2.0, 4.0], [3.0, 4.0, 5.0]).verdict == "worse"


def test_pairing_sees_what_two_unpaired_intervals_hide():
    # each arm's spread over seeds is wide (the seed moves both), but every seed gains exactly 0.5
    baseline, arm = [70.0, 75.0, 80.0], [70.5, 75.5, 80.5]
    assert spread(arm).low < spread(baseline).high  # the two intervals overlap
    assert compare(arm, baseline).verdict == "better"


def test_a_difference_whose_interval_holds_zero_is_no_detectable_difference():
    assert compare([2.0, 1.0, 3.5], [1.0, 2.0, 3.0]).verdict == "no detectable difference"
    assert compare([1.0], [0.0]).verdict == "one seed: no interval"
    with pytest.raises(ValueError, match="length"):
        compare([1.0, 2.0], [1.0])
