from fractions import Fraction

import pytest

from synthvision.core.allocation import capped_split, proportional_split, quota_topup


def test_quota_topup_asks_each_short_class_for_its_shortfall_at_its_own_pass_rate():
    # class 0 met its quota; class 1 passes 3 of 10: 7 more at 0.3 is 23.3, so 24; class 2 passed
    # none: 10 at the floor rate 0.1 is 100, capped at 40 - 10 = 30; class 3: 2 at 0.8 is 2.5, so 3
    assert quota_topup([10, 3, 0, 8], [10, 10, 10, 10], quota=10, cap=40, min_rate=0.1) == [0, 24, 30, 3]


def test_quota_topup_is_exact_where_a_float_division_would_round_up_wrongly():
    # 3 / (1/3) is 9 exactly; as floats it is 9.000000000000002, whose ceiling is 10
    assert quota_topup([1], [3], quota=4, cap=100, min_rate=Fraction(1, 10)) == [9]


def test_quota_topup_gives_nothing_to_a_class_at_its_cap_or_past_its_quota():
    assert quota_topup([0, 12, 5], [40, 12, 39], quota=10, cap=40, min_rate=0.5) == [0, 0, 1]


def test_quota_topup_refuses_a_zero_floor_rate():
    with pytest.raises(ValueError, match="min_rate"):
        quota_topup([0], [10], quota=10, cap=40, min_rate=0)


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (10, [1, 1, 2], [3, 2, 5]),  # shares 2.5, 2.5, 5: the tie goes to class 0
        (7, [0, 0, 0], [3, 2, 2]),  # no signal: even, the spare ones to the lowest ids
        (5, [0.7, 0.2, 0.1], [4, 1, 0]),  # 3.5, 1, 0.5: class 0's remainder .5 ties class 2's, 0 wins
        (6, [Fraction(1, 3), Fraction(2, 3)], [2, 4]),
        (0, [1, 2], [0, 0]),
    ],
)
def test_proportional_split_by_largest_remainder(total, weights, expected):
    assert proportional_split(total, weights) == expected
    assert sum(expected) == total


@pytest.mark.parametrize(
    ("total", "weights", "room", "expected"),
    [
        # 3, 2, 5 first; green takes only 1, and the 1 left splits 1:2 over red and blue: blue's 2/3
        (10, [1, 1, 2], [10, 1, 10], [3, 1, 6]),
        (10, [1, 0, 0], [2, 5, 5], [2, 4, 4]),  # red is full: the rest goes evenly to the weightless
        (20, [1, 1], [3, 4], [3, 4]),  # more than all the room: each class to its cap
        (5, [1, 1], [0, 9], [0, 5]),
    ],
)
def test_capped_split_gives_what_a_full_class_cannot_take_to_the_others(total, weights, room, expected):
    assert capped_split(total, weights, room) == expected
