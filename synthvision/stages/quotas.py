"""Top-up rounds: where each class stands, and the next round (`shards.top_up`).

After every round is generated and scored, `next_round` counts per class what was scored, what
passed CF and CLIP's confidence (from the score manifests alone: `Manifest.per_class`), asks a
policy of `core.allocation` for the next round's images per class, and records the round
(`storage/top_ups.py`) before any of its shards.

- quota: the quota is CF's `filter.per_class`; a class has met it when that many of its images pass
  CF (so CF keeps passing images only, never topping a class up below its threshold). A short class
  asks for its shortfall at the pass rate it has shown (`quota_topup`).
- adaptive: the budget left is spread evenly over the rounds left, and each round's share is split
  over the classes by their weakness (`capped_split`): with the zero-shot signal (`confidence`),
  1 - their images' mean confidence; with the few-shot signal, 1 - the mean probability of their
  class on their real shots, from a head trained on the synthetic images kept so far
  (`fewshot_weakness`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthvision.core import failpoints
from synthvision.core.allocation import capped_split, quota_topup
from synthvision.core.errors import DataError
from synthvision.core.planning import shard_name
from synthvision.methods.classifier_tuning import zero_shot_head
from synthvision.methods.fewshot import Part, class_weakness, part_losses, train_few_shot
from synthvision.models.devices import resolve_device
from synthvision.stages import score
from synthvision.stages.fewshot import encoded_shots
from synthvision.storage.top_ups import TopUpRound, record_round

if TYPE_CHECKING:
    from synthvision.run import Run


@dataclass(frozen=True)
class Standing:
    """Per class, over the rounds planned so far (in a run under way: the shards scored so far)."""

    quota: int  # `filter.per_class` (0 when every passing image is kept)
    generated: tuple[int, ...]  # images planned (generated once their round is done)
    scored: tuple[int, ...]
    passed: tuple[int, ...]  # of those scored, passing CF
    confidence: tuple[float, ...]  # of those scored, the sum of CF's confidence in their class
    rounds: int  # top-up rounds recorded (after the first)
    signalled: tuple[float, ...] = ()  # adaptive: the weakness the last round was split by (() before one)

    @property
    def weakness(self) -> tuple[float, ...]:
        """1 - each class's mean confidence in its own images (1 for a class with none scored)."""
        return tuple(1 - total / n if n else 1.0 for total, n in zip(self.confidence, self.scored, strict=True))

    @property
    def short(self) -> tuple[int, ...]:
        """Images each class still lacks to reach its quota (0 where it has it)."""
        return tuple(max(self.quota - passed, 0) for passed in self.passed)

    def rows(self, classes: tuple[str, ...], policy: str, signal: str = "confidence") -> list[dict[str, str | int]]:
        """A row per class, as `status` and the run page show them: the quota's standing (kept of
        the quota, shortfall), or the weakness the adaptive policy splits by (the few-shot signal's
        as the last round recorded it: measuring it trains a head)."""
        weakness = self.weakness if signal == "confidence" else self.signalled
        rows: list[dict[str, str | int]] = []
        for c, name in enumerate(classes):
            row: dict[str, str | int] = {"class": name}
            if policy == "quota":
                row["kept / quota"] = f"{min(self.passed[c], self.quota)}/{self.quota}"
            row |= {
                "generated": self.generated[c],
                "scored": self.scored[c],
                "pass rate": f"{self.passed[c] / self.scored[c]:.0%}" if self.scored[c] else "-",
            }
            if policy == "quota":
                row["short"] = self.short[c]
            else:
                row[f"weakness ({signal})"] = f"{weakness[c]:.3f}" if weakness else "-"
            rows.append(row)
        return rows


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
    counts = {key: [0] * run.label_space.num_classes for key in ("scored", "passed", "confidence")}
    for index in range(run.num_shards):
        name = shard_name(index)
        source, scores = generated.get(name), scored.get(name)
        if source is None or scores is None or scores.spec_hash != source.sha256:
            if partial:
                continue
            raise DataError(f"top-up rounds: shard {name} is not scored yet; score it before the next round")
        for key, totals in counts.items():
            counts[key] = [total + n for total, n in zip(totals, scores.per_class[key], strict=True)]
    return Standing(
        run.config.filter.per_class or 0,
        generated_per_class(run),
        tuple(counts["scored"]),
        tuple(counts["passed"]),
        tuple(counts["confidence"]),
        len(run.top_ups),
        run.top_ups[-1].weakness if run.top_ups else (),
    )


def fewshot_weakness(run: Run) -> tuple[float, ...]:
    """The few-shot signal: a head from CLIP's zero-shot one (CT w. init) trained, as the fewshot
    stage's `syn_only`, on the synthetic images CF keeps so far, then per class 1 - its mean
    probability of the class on the class's real shots (`top_up.shots` of them: the fewshot stage's
    draw for that M). The shots only measure, never train: a class the synthetic data so far teaches
    badly, as real images show, gets more of the next round."""
    fewshot, top_up = run.config.fewshot, run.config.shards.top_up
    assert fewshot is not None and top_up is not None and top_up.shots is not None  # the config requires them
    real = encoded_shots(run, top_up.shots)
    synthetic = score.read_synthetic(run)
    _, zero_shot = run.clip_and_head()
    device = resolve_device(fewshot.device)
    _, synthetic_loss = part_losses(fewshot)
    trained = train_few_shot(
        "syn_only",
        zero_shot_head(zero_shot.class_embeddings, zero_shot.logit_scale),
        Part.cached(real.features, real.labels, device=device),
        Part.cached(synthetic.features, synthetic.labels, synthetic.teacher, synthetic_loss, device),
        fewshot,
        run.config.seed,
    )
    weakness = class_weakness(trained.head, real.features, real.labels, run.label_space.num_classes)
    return tuple(float(value) for value in weakness)


def next_round(run: Run) -> TopUpRound | None:
    """Record the next top-up round and plan its shards; None when the policy asks for no more
    images (quota: every class has its quota or the short ones are at `max_per_class`; adaptive:
    the budget is spent) or `max_rounds` rounds were run."""
    top_up = run.config.shards.top_up
    if top_up is None:
        return None
    now = standing(run)
    if now.rounds >= top_up.max_rounds:
        return None
    weakness: tuple[float, ...] = ()
    if top_up.policy == "quota":
        images = quota_topup(now.passed, now.generated, now.quota, top_up.max_per_class, top_up.min_pass_rate)
    else:
        assert top_up.budget_per_class is not None  # the config requires it for adaptive
        left = top_up.budget_per_class * run.label_space.num_classes - sum(now.generated)
        signal = now.weakness if top_up.signal == "confidence" else fewshot_weakness(run)
        weakness = tuple(round(value, 6) for value in signal)  # as recorded
        room = [top_up.max_per_class - generated for generated in now.generated]
        images = capped_split(-(-left // (top_up.max_rounds - now.rounds)), weakness, room)
    if not any(images):
        return None
    decided = TopUpRound(
        now.rounds + 1,
        run.hashes["generate"],
        tuple(images),
        now.passed,
        now.generated,
        top_up.policy,
        weakness,
        top_up.signal if top_up.policy == "adaptive" else "",
    )
    record_round(run.storage, decided)
    failpoints.reach("top_up.recorded")
    run.refresh_plan()
    return decided
