"""Training data for the ResNet jobs, in a fixed order per (seed, epoch) so a resumed job sees exactly
the batches it would have seen.

Synthetic shards are streamed tar by tar with webdataset's tar reader (shard order and the order
inside each shard shuffled per epoch); real labelled sets are held in memory. Every image gets its
own augmentation seed, so augmentations do not depend on batching or on where a job resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from synthvision.core.hashing import derive_seed
from synthvision.core.manifest import Manifest
from synthvision.storage.store import Storage
from synthvision.storage.tars import decode_image, read_samples, sample_image_bytes

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Transform = Callable[[Image.Image], torch.Tensor]


def _to_tensor() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


def train_transform(size: int) -> Transform:
    """Random resized crop and horizontal flip (supervised pre-training, scratch, transfer)."""
    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), *_to_tensor()])


def moco_v2_transform(size: int) -> Transform:
    """MoCo v2's augmentation (Chen et al. 2020): crop from 20% of the image, colour jitter with p 0.8,
    grayscale with p 0.2, Gaussian blur with p 0.5, horizontal flip."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size=2 * (size // 20) + 1, sigma=(0.1, 2.0))], p=0.5),
            v2.RandomHorizontalFlip(),
            *_to_tensor(),
        ]
    )


def eval_transform(size: int) -> Transform:
    return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size), *_to_tensor()])


def seeded(transform: Transform, image: Image.Image, seed: int) -> torch.Tensor:
    """`transform(image)` with its randomness fixed by `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


@dataclass(frozen=True)
class Example:
    image: Image.Image
    label: int
    seed: int  # fixes this example's augmentation in this epoch


def synthetic_examples(
    storage: Storage, manifests: list[Manifest], seed: int, epoch: int, skip: int
) -> Iterator[Example]:
    """The committed synthetic images of an epoch in its shuffled order, the first `skip` left out
    (skipped ones are not decoded)."""
    rng = np.random.default_rng([seed, epoch])
    position = 0
    for shard in rng.permutation(len(manifests)):
        manifest = manifests[shard]
        with storage.open(manifest.data_file) as stream:
            samples = list(read_samples(stream, manifest.data_file))
        for i in rng.permutation(len(samples)):
            if position >= skip:
                sample = samples[i]
                yield Example(
                    decode_image(sample_image_bytes(sample)),
                    int(sample["cls"]),
                    derive_seed(seed, epoch, sample["__key__"]),
                )
            position += 1


@dataclass
class LabelledImages:
    """A real labelled set in memory."""

    images: list[Image.Image]
    labels: np.ndarray

    def subset(self, indices: np.ndarray) -> LabelledImages:
        return LabelledImages([self.images[i] for i in indices], self.labels[indices])

    def examples(self, seed: int, epoch: int, skip: int) -> Iterator[Example]:
        order = np.random.default_rng([seed, epoch]).permutation(len(self.labels))
        for position in range(skip, len(order)):
            i = int(order[position])
            yield Example(self.images[i], int(self.labels[i]), derive_seed(seed, epoch, i))


def batches(
    examples: Iterator[Example], size: int, views: list[Transform]
) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
    """Batches of `size` (the last may be smaller): one stacked tensor per view, and the labels.
    Each view of an example gets its own seed from the example's."""
    chunk: list[Example] = []
    for example in examples:
        chunk.append(example)
        if len(chunk) == size:
            yield _collate(chunk, views)
            chunk = []
    if chunk:
        yield _collate(chunk, views)


def _collate(chunk: list[Example], views: list[Transform]) -> tuple[list[torch.Tensor], torch.Tensor]:
    stacked = [
        torch.stack([seeded(view, e.image, derive_seed(e.seed, v)) for e in chunk]) for v, view in enumerate(views)
    ]
    return stacked, torch.tensor([e.label for e in chunk])


def load_labelled(url: str, fmt: str, label_space, storage_options: dict | None, field: str) -> LabelledImages:
    """A whole real labelled set (image folder or WebDataset) into memory."""
    from synthvision.datasets.labelled import iter_labelled

    images, labels = [], []
    for image, label, _ in iter_labelled(url, fmt, label_space, storage_options, field):
        images.append(image)
        labels.append(label)
    if not labels:
        from synthvision.core.errors import DataError

        raise DataError(f"{field} {url} holds no images")
    return LabelledImages(images, np.asarray(labels, dtype=np.int64))
