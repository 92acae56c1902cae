"""Shard planning: which image goes in which shard, with which prompt and seed.

The plan holds only the prompt ids per class; a shard's spec is computed on demand, so planning a
million-image run costs memory proportional to the number of prompts and shards, not images.

Image `g` (0 <= g < classes * images_per_class) is image `j = g // C` of class `c = g % C`: classes
are interleaved, so every shard holds a mix of classes and can be streamed for training as is. It uses
prompt `j mod P_c` of its class (P_c prompts), and the seed `derive_seed(seed, g)`; with real
guidance from M shots per class it starts from shot `j mod M` of its class, so the class's budget is
split evenly over its shots. Nothing here
depends on the shard size except which shard `g` lands in, so one image is the same in every run of
the same config.

Top-up rounds (quota mode, `core/allocation.py`) continue the same numbering: round `r` asks for
`n_c` more images of each class, dealt out one per class at a time (in class order; a class drops
out when its `n_c` are dealt), with keys and seeds continuing from the images before it and each
class's prompts and shots continuing their cycles. The first round is the plan above, dealt the
same way. A round starts a shard of its own, so the shards before it never change.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate

from synthvision.core.errors import ConfigError
from synthvision.core.hashing import derive_seed, stable_hash


def shard_name(index: int) -> str:
    """The one place a shard's name is formatted: `shard-00042`."""
    return f"shard-{index:05d}"


def check_shard_size(num_classes: int, images_per_class: int, shard_size: int) -> int:
    """Validate the shard size against the run; returns the number of shards."""
    num_images = num_classes * images_per_class
    if shard_size > num_images:
        raise ConfigError(
            f"shards.shard_size ({shard_size}) is larger than the run "
            f"({num_images} images = {num_classes} classes x {images_per_class} per class)"
        )
    return -(-num_images // shard_size)


@dataclass(frozen=True)
class SampleSpec:
    key: str
    class_id: int
    prompt_id: int
    seed: int
    reference: int | None = None  # real guidance: which of its class's shots the image starts from


@dataclass(frozen=True)
class ShardSpec:
    index: int
    samples: tuple[SampleSpec, ...]

    @property
    def name(self) -> str:
        return shard_name(self.index)

    @cached_property
    def spec_hash(self) -> str:
        return stable_hash(
            [
                [s.key, s.class_id, s.prompt_id, s.seed, *([] if s.reference is None else [s.reference])]
                for s in self.samples
            ]
        )


@dataclass(frozen=True)
class Dealing:
    """One round's images in dealing order: laps of one image per class still owed some."""

    counts: tuple[int, ...]

    @cached_property
    def _segments(self) -> tuple[list[int], list[int], list[tuple[int, ...]]]:
        """Runs of laps dealing to the same classes: (first position, laps before, classes) each."""
        starts, laps, classes = [], [], []
        position = dealt = 0
        for threshold in sorted(set(self.counts) - {0}):
            active = tuple(c for c, n in enumerate(self.counts) if n >= threshold)
            starts.append(position)
            laps.append(dealt)
            classes.append(active)
            position += (threshold - dealt) * len(active)
            dealt = threshold
        return starts, laps, classes

    def __len__(self) -> int:
        return sum(self.counts)

    def __getitem__(self, position: int) -> tuple[int, int]:
        """The class of the round's image at `position`, and which of that class's images in the round."""
        starts, laps, classes = self._segments
        segment = bisect_right(starts, position) - 1
        active = classes[segment]
        offset = position - starts[segment]
        return active[offset % len(active)], laps[segment] + offset // len(active)


@dataclass(frozen=True)
class ShardPlan:
    prompt_ids_by_class: tuple[tuple[int, ...], ...]
    images_per_class: int
    shard_size: int
    seed: int
    references_per_class: int = 0  # real guidance: shots per class (0: text-to-image)
    top_ups: tuple[tuple[int, ...], ...] = ()  # top-up rounds after the first: more images per class

    def __post_init__(self) -> None:
        for class_id, prompt_ids in enumerate(self.prompt_ids_by_class):
            if not prompt_ids:
                raise ConfigError(f"class {class_id} has no prompts; prompt expansion must give each class one")
        check_shard_size(self.num_classes, self.images_per_class, self.shard_size)
        for number, counts in enumerate(self.top_ups, start=1):
            if len(counts) != self.num_classes or min(counts) < 0 or not sum(counts):
                raise ConfigError(
                    f"top-up round {number} asks for {list(counts)}: it needs a count >= 0 for each of the "
                    f"{self.num_classes} classes, and at least one image"
                )

    @cached_property
    def _dealings(self) -> tuple[Dealing, ...]:
        return (Dealing((self.images_per_class,) * self.num_classes), *map(Dealing, self.top_ups))

    @cached_property
    def _first_image(self) -> tuple[int, ...]:
        """Each round's first image (g), and one past the last image."""
        return (0, *accumulate(map(len, self._dealings)))

    @cached_property
    def _first_shard(self) -> tuple[int, ...]:
        """Each round's first shard, and one past the last shard."""
        return (0, *accumulate(-(-len(dealing) // self.shard_size) for dealing in self._dealings))

    @cached_property
    def _dealt_before(self) -> tuple[tuple[int, ...], ...]:
        """Each class's images in the rounds before each round."""
        before = [(0,) * self.num_classes]
        for dealing in self._dealings[:-1]:
            before.append(tuple(map(sum, zip(before[-1], dealing.counts, strict=True))))
        return tuple(before)

    @property
    def num_classes(self) -> int:
        return len(self.prompt_ids_by_class)

    @property
    def num_images(self) -> int:
        return self._first_image[-1]

    @property
    def num_shards(self) -> int:
        return self._first_shard[-1]

    def shard_names(self) -> list[str]:
        return [shard_name(index) for index in range(self.num_shards)]

    def sample(self, g: int) -> SampleSpec:
        if not 0 <= g < self.num_images:
            raise IndexError(f"image {g} is outside the plan (0..{self.num_images - 1})")
        round_ = bisect_right(self._first_image, g) - 1
        class_id, in_round = self._dealings[round_][g - self._first_image[round_]]
        j = self._dealt_before[round_][class_id] + in_round
        prompt_ids = self.prompt_ids_by_class[class_id]
        reference = j % self.references_per_class if self.references_per_class else None
        return SampleSpec(f"{g:010d}", class_id, prompt_ids[j % len(prompt_ids)], derive_seed(self.seed, g), reference)

    def shard(self, index: int) -> ShardSpec:
        if not 0 <= index < self.num_shards:
            raise IndexError(f"shard {index} is outside the plan (0..{self.num_shards - 1})")
        round_ = bisect_right(self._first_shard, index) - 1
        start = self._first_image[round_] + (index - self._first_shard[round_]) * self.shard_size
        stop = min(start + self.shard_size, self._first_image[round_ + 1])
        return ShardSpec(index, tuple(self.sample(g) for g in range(start, stop)))


def plan_from_prompts(
    prompt_class_ids: list[int],
    num_classes: int,
    images_per_class: int,
    shard_size: int,
    seed: int,
    references_per_class: int = 0,
    top_ups: tuple[tuple[int, ...], ...] = (),
) -> ShardPlan:
    """Build the plan from the prompt table's class-id column (prompt id = row number)."""
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for prompt_id, class_id in enumerate(prompt_class_ids):
        by_class[class_id].append(prompt_id)
    return ShardPlan(
        tuple(tuple(ids) for ids in by_class), images_per_class, shard_size, seed, references_per_class, top_ups
    )
