"""Training data for the ResNet jobs, in a fixed order per (seed, epoch) so a resumed job sees exactly
the batches it would have seen.

Synthetic shards are streamed tar by tar with webdataset's tar reader (shard order and the order
inside each shard shuffled per epoch); real labelled sets are held in memory. Every image gets its
own augmentation seed, so augmentations do not depend on batching, on where a job resumed, or on
which DataLoader worker made its batch (`epoch_batches`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms import v2

from synthvision.core.batching import batched
from synthvision.core.hashing import derive_seed
from synthvision.core.manifest import Manifest
from synthvision.storage.store import Storage
from synthvision.storage.tars import decode_image, read_samples, sample_image_bytes

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Transform = Callable[[Image.Image], torch.Tensor]  # an image to its uint8 view (3 x H x W)


def _to_tensor() -> list:
    """A view leaves its worker as uint8 (`to_model` makes it floats where the model runs)."""
    return [v2.ToImage()]


def to_model(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of views (N x 3 x H x W uint8) as the model's input on `device`: scaled to [0, 1] and
    normalised there. A quarter of float32's bytes goes through the DataLoader's shared memory and the
    copy to a GPU, and the float work runs once per batch on the model's device, not per image in a
    worker (the same floats: both steps are elementwise)."""
    floats = v2.functional.to_dtype(pixels.to(device, non_blocking=True), torch.float32, scale=True)
    return v2.functional.normalize(floats, list(MEAN), list(STD))


def train_transform(size: int) -> Transform:
    """Random resized crop and horizontal flip (supervised pre-training, scratch, transfer)."""
    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), *_to_tensor()])


class GaussianBlur:
    """MoCo v2's blur as its reference code applies it (`moco/loader.py`): PIL's Gaussian filter with a
    radius drawn uniformly from (0.1, 2.0). On a 224 px image it costs 1.3 ms on one core where
    torchvision's convolution with a kernel of a tenth of the image costs 37 ms: that convolution alone
    held the loader to 23 images/s on 2 cores. The radius comes from torch's generator, so `seeded` fixes it."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        radius = float(torch.empty(()).uniform_(*self.sigma))
        return image.filter(ImageFilter.GaussianBlur(radius=radius))


def moco_v2_transform(size: int) -> Transform:
    """MoCo v2's augmentation (Chen et al. 2020): crop from 20% of the image, colour jitter with p 0.8,
    grayscale with p 0.2, Gaussian blur with p 0.5, horizontal flip."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([GaussianBlur()], p=0.5),
            v2.RandomHorizontalFlip(),
            *_to_tensor(),
        ]
    )


def eval_transform(size: int) -> Transform:
    return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size), *_to_tensor()])


def seeded(transform: Transform, image: Image.Image, seed: int) -> torch.Tensor:
    """`transform(image)` with its randomness fixed by `seed`. Only the CPU generator is seeded (the
    transforms draw from it alone): `torch.manual_seed` would also queue a seed for every CUDA device
    and format a stack trace to go with it, a tenth of a loader worker's time, per view."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return transform(image)


@dataclass(frozen=True)
class Example:
    source: bytes | Image.Image  # the encoded image (from a shard) or the image (a real set in memory)
    label: int
    seed: int  # fixes this example's augmentation in this epoch

    def image(self) -> Image.Image:
        """Decoded where it is augmented: in the worker that makes its batch."""
        return decode_image(self.source) if isinstance(self.source, bytes) else self.source


def synthetic_examples(
    storage: Storage, manifests: list[Manifest], seed: int, epoch: int, skip: int
) -> Iterator[Example]:
    """The committed synthetic images of an epoch in its shuffled order, the first `skip` left out
    (still encoded: only the worker that augments an image decodes it)."""
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
                    sample_image_bytes(sample),
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


Batch = tuple[list[torch.Tensor], torch.Tensor]  # one stacked tensor per view, and the labels


class EpochBatches(IterableDataset):
    """An epoch's batches of `size` (the last may be smaller). Each view of an example gets its own
    seed from the example's.

    In a DataLoader with N workers, worker w makes batches w, w + N, w + 2N, ...: the DataLoader takes
    one batch from each worker in turn, so it yields them in the order one process would (the same
    batches and the same resumed weights for any N). Every worker reads the epoch's example stream (a
    shard's tar is read by each worker that has a batch in it); only the decoding and augmenting,
    the costly part, is divided.
    """

    def __init__(self, examples: Callable[[], Iterator[Example]], size: int, views: list[Transform]):
        self.examples, self.size, self.views = examples, size, views

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index, chunk in enumerate(batched(self.examples(), self.size)):
            if index % workers == worker:
                yield _collate(chunk, self.views)


def epoch_batches(
    examples: Callable[[], Iterator[Example]], size: int, views: list[Transform], workers: int, pin: bool
) -> Iterator[Batch]:
    """An epoch's batches, made by `workers` DataLoader processes while the model trains (0: in this
    process), pinned for asynchronous copies to a GPU when `pin`."""
    dataset = EpochBatches(examples, size, views)
    if workers == 0:
        return iter(dataset)
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=2,
        worker_init_fn=_forget_parent_exit_hooks,
    )
    return iter(loader)


def _forget_parent_exit_hooks(_: int) -> None:
    """A forked worker inherits the exit hooks its parent registered with `threading` (Prefect 3.8's
    services register one to drain their queues; in a child those services do not exist, the hook
    fails an assertion and the worker exits with status 1, which the DataLoader reports as a crash).
    A worker only decodes and augments: none of those hooks is its own."""
    import threading

    hooks = getattr(threading, "_threading_atexits", None)
    if hooks is not None:
        hooks.clear()


def _collate(chunk: list[Example], views: list[Transform]) -> Batch:
    images = [example.image() for example in chunk]
    stacked = [
        torch.stack([seeded(view, image, derive_seed(e.seed, v)) for e, image in zip(chunk, images, strict=True)])
        for v, view in enumerate(views)
    ]
    return stacked, torch.tensor([e.label for e in chunk])


def load_labelled(url: str, fmt: str, label_space, storage_options: dict | None, field: str) -> LabelledImages:
    """A whole real labelled set (image folder or WebDataset) into memory."""
    from synthvision.datasets.labelled import read_labelled

    images, labels, _ = read_labelled(url, fmt, label_space, storage_options, field, keep_images=True)
    return LabelledImages(images, labels)
