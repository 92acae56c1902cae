"""Fashion-MNIST (Xiao et al. 2017, MIT licence): 60,000 train and 10,000 test images of 28 x 28 grey
pixels in 10 clothing classes, read from the dataset's standard idx files, plain or gzipped.

A split is named by its images file (`train-images-idx3-ubyte[.gz]` or `t10k-images-idx3-ubyte[.gz]`);
its labels file is the same name with `labels-idx1`. Naming the file rather than the folder keeps the
two splits apart everywhere a labelled set is read: a test set is a `t10k-` file, a few-shot pool a
`train-` one. On Debian the files come with the package `dataset-fashion-mnist`.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthvision.core.errors import DataError

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
IMAGES_MARK, LABELS_MARK = "images-idx3-ubyte", "labels-idx1-ubyte"
# The dataset's classes in label order ("T-shirt/top" loses its slash: class names are folder names).
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_idx_images(path: str) -> bool:
    return IMAGES_MARK in Path(path).name


def read_idx(path: str | Path) -> np.ndarray:
    return parse_idx(Path(path).read_bytes(), str(path))


def parse_idx(data: bytes, path: str) -> np.ndarray:
    """An idx file's array (gzipped if `path` ends in .gz): a 4-byte magic (0, 0, type, rank), rank
    big-endian sizes, then the data."""
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an idx file (bad magic number)")
    rank = data[3]
    shape = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    body = data[4 + 4 * rank :]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise DataError(f"{path}: {len(body)} data bytes, but its header says {shape} of {dtype}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).copy()  # writable, and free of `data`


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # N x 28 x 28 uint8
    labels: np.ndarray  # N int64 class ids


def labels_file(images_file: str) -> str:
    """The labels file of an images file (a path or URL): its name with `labels-idx1` for `images-idx3`."""
    head, _, name = str(images_file).rpartition("/")
    return f"{head}/{name.replace(IMAGES_MARK, LABELS_MARK)}" if head else name.replace(IMAGES_MARK, LABELS_MARK)


def parse_split(images: bytes, labels: bytes, images_file: str) -> Split:
    """A split from the bytes of its images file and its labels file."""
    image_array = parse_idx(images, images_file)
    label_array = parse_idx(labels, labels_file(images_file)).astype(np.int64)
    if image_array.ndim != 3 or label_array.ndim != 1 or len(image_array) != len(label_array):
        raise DataError(
            f"{images_file}: {image_array.shape} images do not match {label_array.shape} labels in "
            f"{labels_file(images_file)}"
        )
    return Split(image_array, label_array)


def read_split_file(images_file: str | Path) -> Split:
    """The images of an idx images file and the labels of its companion labels file."""
    paths = (Path(images_file), Path(labels_file(str(images_file))))
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path} does not exist (Fashion-MNIST idx files: Debian package dataset-fashion-mnist)")
    return parse_split(paths[0].read_bytes(), paths[1].read_bytes(), str(images_file))


def split_file(split: str, folder: str | Path = DEBIAN_FOLDER) -> Path:
    """The images file of `split` (train or test) in `folder`, gzipped or not."""
    if split not in SPLIT_PREFIXES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}: use 'train' or 'test'")
    stem = f"{SPLIT_PREFIXES[split]}-{IMAGES_MARK}"
    for name in (stem, f"{stem}.gz"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise DataError(f"no {stem}[.gz] in {folder} (Fashion-MNIST idx files: Debian package dataset-fashion-mnist)")


def load_split(split: str, folder: str | Path = DEBIAN_FOLDER) -> Split:
    return read_split_file(split_file(split, folder))


def available(folder: str | Path = DEBIAN_FOLDER) -> bool:
    """Whether both splits' idx files are in `folder`."""
    try:
        for split in SPLIT_PREFIXES:
            path = split_file(split, folder)
            if not Path(labels_file(str(path))).is_file():
                return False
    except DataError:
        return False
    return True
