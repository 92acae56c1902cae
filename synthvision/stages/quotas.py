"""Quota mode: where each class stands against its quota, and the next top-up round.

The quota is CF's `filter.per_class`: a class has met it when that many of its images pass CF, so
CF keeps passing images only and never tops a class up with images below its threshold. After
every round is generated and scored, `next_round` counts what passed per class (from the score
manifests alone: `Manifest.per_class`), asks `core.allocation.quota_topup` for the shortfall at
each class's pass rate, and records the round (`storage/top_ups.py`) before any of its shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthvision.core import failpoints
from synthvision.core.allocation import quota_topup
from synthvision.core.errors import DataError
from synthvision.storage.top_ups import TopUpRound, record_round

if TYPE_CHECKING:
    from synthvision.run import Run


@dataclass(frozen=True)
class Standing:
    """Per class, over the rounds planned so far (in a run under way: the shards scored so far)."""

    quota: int
    generated: tuple[int, ...]  # images planned (generated once their round is done)
    scored: tuple[int, ...]
    passed: tuple[int, ...]  # of those scored, passing CF
    rounds: int  # top-up rounds recorded (after the first)

    @property
    def short(self) -> tuple[int, ...]:
        """Images each class still lacks to reach its quota (0 where it has it)."""
        return tuple(max(self.quota - passed, 0) for passed in self.passed)

    def rows(self, classes: tuple[str, ...]) -> list[dict[str, str | int]]:
        """A row per class, as `status` and the run page show them."""
        return [
            {
                "class": name,
                "kept / quota": f"{min(passed, self.quota)}/{self.quota}",
                "generated": generated,
                "scored": scored,
                "pass rate": f"{passed / scored:.0%}" if scored else "-",
                "short": short,
            }
            for name, generated, scored, passed, short in zip(
                classes, self.generated, self.scored, self.passed, self.short, strict=True
            )
        ]


def generated_per_class(run: Run) -> tuple[int, ...]:
    """Each class's images over the first round and every recorded top-up round."""
    first = run.config.shards.images_per_class
    counts = [first] * run.label_space.num_classes
    for top_up in run.top_ups:
        counts = [count + more for count, more in zip(counts, top_up.images, strict=True)]
    return tuple(counts)


def standing(run: Run, partial: bool = False) -> Standing:
    """Where each class stands, from the committed scores of every planned shard: an error naming
    the first shard not yet scored (a round is decided on all the data before it, never on part),
    or with `partial`, from the shards scored so far (what `status` shows of a run under way)."""
    generated, scored = run.commits.shards("generate"), run.commits.shards("score")
    counts = {"scored": [0] * run.label_space.num_classes, "passed": [0] * run.label_space.num_classes}
    for index in range(run.num_shards):
        name = run.shard(index).name
        source, scores = generated.get(name), scored.get(name)
        if source is None or scores is None or scores.spec_hash != source.sha256:
            if partial:
                continue
            raise DataError(f"quota mode: shard {name} is not scored yet; generate and score it before a top-up round")
        for key, totals in counts.items():
            counts[key] = [total + n for total, n in zip(totals, scores.per_class[key], strict=True)]
    quota = run.config.filter.per_class
    assert quota is not None  # the config refuses top_up without it
    return Standing(quota, generated_per_class(run), tuple(counts["scored"]), tuple(counts["passed"]), len(run.top_ups))


def next_round(run: Run) -> TopUpRound | None:
    """Record the next top-up round and plan its shards; None when every class has its quota, the
    short ones are at `max_per_class`, or `max_rounds` rounds were run."""
    top_up = run.config.shards.top_up
    if top_up is None:
        return None
    now = standing(run)
    if now.rounds >= top_up.max_rounds:
        return None
    images = quota_topup(now.passed, now.generated, now.quota, top_up.max_per_class, top_up.min_pass_rate)
    if not any(images):
        return None
    decided = TopUpRound(now.rounds + 1, run.hashes["generate"], tuple(images), now.passed, now.generated)
    record_round(run.storage, decided)
    failpoints.reach("top_up.recorded")
    run.refresh_plan()
    return decided
