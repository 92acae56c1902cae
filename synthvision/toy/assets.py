"""The real Fashion-MNIST files the project ships, so the demo needs nothing but `pip`:

- `test-subset.tar`: the first 200 images per class of the test split (2,000), the demo's test set;
- `train-pool.tar`: 100 images per class drawn (seeded) from the train split, the few-shot pool and
  the real images the pre-training demo fine-tunes on.

Both are WebDataset tars (`{key}.png` grey 28 px, `{key}.cls`), the layout any labelled tar has, and
each sample's key names its split and index, so train and test can never be mixed up unnoticed.
Where the idx files are installed, the full splits are read instead (`fashion_mnist.py`).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from synthvision.datasets.fashion_mnist import Split

TEST_SUBSET, TRAIN_POOL = "test-subset.tar", "train-pool.tar"
TEST_PER_CLASS, POOL_PER_CLASS = 200, 100


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` images of each class, in split order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == label)[:per_class] for label in np.unique(labels)]))


def drawn_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` indices of each class drawn without replacement, fixed by `seed`, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(labels == label), per_class, replace=False) for label in np.unique(labels)]
        )
    )


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0
    tar.addfile(info, io.BytesIO(data))


def write_labelled_tar(path: Path, split: Split, indices: np.ndarray, split_name: str) -> None:
    """Samples `{split_name}-{index:05d}` with a grey PNG and the class id, byte-for-byte reproducible
    (plain ustar entries: no per-entry extended headers, half the size of a default tar here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for index in indices:
            buffer = io.BytesIO()
            Image.fromarray(split.images[index]).save(buffer, format="PNG", optimize=True)
            key = f"{split_name}-{index:05d}"
            _add(tar, f"{key}.png", buffer.getvalue())
            _add(tar, f"{key}.cls", str(int(split.labels[index])).encode("ascii"))


def write_assets(folder: Path, train: Split, test: Split, seed: int = 0) -> dict[str, int]:
    write_labelled_tar(folder / TEST_SUBSET, test, first_per_class(test.labels, TEST_PER_CLASS), "test")
    write_labelled_tar(folder / TRAIN_POOL, train, drawn_per_class(train.labels, POOL_PER_CLASS, seed), "train")
    return {name: (folder / name).stat().st_size for name in (TEST_SUBSET, TRAIN_POOL)}


def shipped(name: str) -> Path:
    """The path of a shipped file (`TEST_SUBSET` or `TRAIN_POOL`)."""
    return Path(__file__).resolve().parents[1] / "data" / "toy" / "fashion-mnist" / name


def read_labelled_tar(path: Path) -> Split:
    """A shipped tar back as a split (grey 28 px pixels and class ids, in tar order)."""
    images, labels = {}, {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, extension = member.name.rpartition(".")
            data = tar.extractfile(member).read()
            if extension == "png":
                images[key] = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
            elif extension == "cls":
                labels[key] = int(data)
    keys = sorted(images)
    return Split(np.stack([images[key] for key in keys]), np.asarray([labels[key] for key in keys], dtype=np.int64))
