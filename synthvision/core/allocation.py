"""How many more images each class gets in a top-up round: the policies, pure and exact.

A run's first round is its plan (`shards.images_per_class` for every class). After it is scored, a
policy looks at what passed CF per class and asks for more where a class is short. Both policies use
exact fractions, so an allocation is the same on every machine and a resumed run recomputes it
bit for bit (it is also recorded: `storage/top_ups.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def exact(value: float | Fraction) -> Fraction:
    """A float as the decimal it prints as (0.7 is 7/10, not the binary float nearest it): two
    classes whose shares a person sees as tied are tied."""
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def quota_topup(
    passed: Sequence[int], generated: Sequence[int], quota: int, cap: int, min_rate: Fraction | float
) -> list[int]:
    """Per class, the images to generate so that `quota` pass, at the pass rate seen so far.

    A class short of its quota by `q - p` gets `ceil((q - p) / max(p / g, min_rate))` images: the
    rate it has shown, floored at `min_rate` so a class where nothing passed yet asks for a bounded
    number, never infinitely many. No class goes past `cap` generated images; a class at its cap
    gets 0 and stays short (a shortfall the report states).
    """
    if len(passed) != len(generated):
        raise ValueError(f"passed ({len(passed)} classes) and generated ({len(generated)}) differ in length")
    floor = exact(min_rate)
    if not 0 < floor <= 1:
        raise ValueError(f"min_rate must be in (0, 1], got {min_rate}")
    wanted = []
    for p, g in zip(passed, generated, strict=True):
        need = quota - p
        if need <= 0 or g >= cap:
            wanted.append(0)
            continue
        rate = max(Fraction(p, g) if g else Fraction(0), floor)
        wanted.append(min(-(-need // rate), cap - g))  # ceil of an exact fraction
    return [int(n) for n in wanted]


def proportional_split(total: int, weights: Sequence[float | Fraction]) -> list[int]:
    """`total` images split over classes in proportion to `weights`, by the largest remainder.

    Each class gets the floor of its exact share; the images left over go one each to the classes
    with the largest remainders, ties to the lower class id. All weights zero splits evenly.
    """
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError(f"a split needs a total >= 0 and weights >= 0, got {total} and {list(weights)}")
    fractions = [exact(w) for w in weights]
    if sum(fractions) == 0:
        fractions = [Fraction(1)] * len(fractions)
    shares = [total * w / sum(fractions) for w in fractions]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda c: (-(shares[c] - counts[c]), c))
    for class_id in by_remainder[: total - sum(counts)]:
        counts[class_id] += 1
    return counts


def capped_split(total: int, weights: Sequence[float | Fraction], room: Sequence[int]) -> list[int]:
    """`proportional_split` where class c takes at most `room[c]`: what a full class cannot take is
    split again over the others by their weights (evenly where those are all zero). Places
    `min(total, sum(room))` images."""
    if len(weights) != len(room) or any(r < 0 for r in room):
        raise ValueError(f"a capped split needs a room >= 0 per weight, got {list(room)} for {list(weights)}")
    counts = [0] * len(room)
    left = min(total, sum(room))
    open_classes = [c for c, r in enumerate(room) if r > 0]
    while left > 0:  # each pass places all that is left or fills a class: it ends
        share = proportional_split(left, [weights[c] for c in open_classes])
        for class_id, wanted in zip(open_classes, share, strict=True):
            taken = min(wanted, room[class_id] - counts[class_id])
            counts[class_id] += taken
            left -= taken
        open_classes = [c for c in open_classes if counts[c] < room[c]]
    return counts
