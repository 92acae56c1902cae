"""The progress line a person watches: counts, a rate that ignores shards committed before, an ETA."""

from __future__ import annotations

import time

import pytest

from flows.progress import StageProgress, clock, duration
from synthvision.core.manifest import Manifest
from synthvision.storage.commits import ShardOutcome


def outcome(index: int, count: int, done_now: bool) -> ShardOutcome:
    manifest = Manifest(f"shard-{index:05d}", "generate", "h", "s", "x.tar", count, 1, "sha")
    return ShardOutcome(manifest.shard, manifest, done_now=done_now)


def test_the_rate_counts_only_images_computed_now_and_the_eta_follows_it():
    progress = StageProgress("generate", shards_planned=10, images_planned=1000, started=time.monotonic() - 40)
    progress.add(outcome(0, 100, done_now=False))  # committed by an earlier run: skipped in a moment
    progress.add(outcome(1, 100, done_now=False))
    progress.add(outcome(2, 100, done_now=True))
    progress.add(outcome(3, 100, done_now=True))
    # 40 s in: 5 images/s (the 200 skipped images are not work done), 600 images left
    assert progress.rate == pytest.approx(200 / 40, rel=1e-2)
    assert progress.eta == pytest.approx(600 / 5, rel=1e-2)
    assert progress.percent == 40.0
    assert progress.line() == "generate: 4/10 shards, 400/1,000 images, 5.0 images/s, ETA 2m 00s, elapsed 40s, 0 failed"


def test_before_any_work_there_is_no_rate_and_at_the_end_no_time_left():
    progress = StageProgress("score", shards_planned=2, images_planned=4)
    assert progress.rate is None and progress.eta is None and "— images/s, ETA —" in progress.line()
    progress.add(outcome(0, 2, done_now=False))
    progress.add(outcome(1, 2, done_now=False))
    assert progress.eta == 0.0 and progress.percent == 100.0


def test_durations_and_times_read_at_a_glance():
    assert [duration(s) for s in (None, 0, 12.4, 485, 14_520)] == ["—", "0s", "12s", "8m 05s", "4h 02m"]
    assert clock(None) == "—"
    assert clock(1_795_000_502.1254) == "2026-11-18 11:15:02.125"
