"""Spread over seeds and a verdict against a baseline: the maths of an experiment's report.

A metric measured once per seed is summarised by its mean, its sample standard deviation and a
Student-t confidence interval of the mean. Two arms are compared *paired*: seed s of an arm and seed s
of the baseline share their shards where the arms share a generate stage, so the per-seed difference
cancels what the seed alone moves, and its interval is narrower than the two arms' intervals suggest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy.stats import t as student_t

Verdict = Literal["better", "worse", "no detectable difference", "one seed: no interval"]


@dataclass(frozen=True)
class Spread:
    """A metric over seeds: mean, sample standard deviation and the mean's confidence interval
    (None for one value: one run is an anecdote, not an interval)."""

    n: int
    mean: float | None  # None: no values
    std: float | None
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.high is None or self.mean is None else self.high - self.mean


def spread(values: Sequence[float], confidence: float = 0.95) -> Spread:
    """Mean, standard deviation (n - 1) and the two-sided t interval of the mean at `confidence`."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Spread(1, mean, None, None, None)
    std = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (n - 1))
    half = float(student_t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Spread(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """An arm against the baseline over the seeds both have: the paired difference and its verdict."""

    difference: Spread  # arm - baseline, per seed
    verdict: Verdict


def compare(arm: Sequence[float], baseline: Sequence[float], higher_is_better: bool = True) -> Comparison:
    """The paired difference `arm[i] - baseline[i]` and the verdict its interval gives: better or
    worse when the interval excludes zero (in the direction `higher_is_better` says is good), else no
    detectable difference at this many seeds."""
    if len(arm) != len(baseline):
        raise ValueError(f"paired values differ in length: {len(arm)} and {len(baseline)}")
    difference = spread([a - b for a, b in zip(arm, baseline, strict=True)])
    if difference.low is None or difference.high is None:
        return Comparison(difference, "one seed: no interval")
    if difference.low > 0 or difference.high < 0:
        up = difference.low > 0
        return Comparison(difference, "better" if up == higher_is_better else "worse")
    return Comparison(difference, "no detectable difference")
