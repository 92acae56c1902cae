"""Fashion-MNIST's idx files: the format read by hand-built files, the splits kept apart, and an idx
images file used as a labelled set wherever a test set or a pool is read."""

import gzip
import struct
import tarfile

import numpy as np
import pytest

from synthvision.core.errors import DataError
from synthvision.core.label_spaces import load_label_space
from synthvision.datasets.fashion_mnist import CLASSES, available, labels_file, load_split, parse_idx, split_file
from synthvision.datasets.labelled import iter_labelled
from synthvision.toy.assets import TEST_PER_CLASS, TEST_SUBSET, TRAIN_POOL, read_labelled_tar, shipped


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file by the format's definition: 0, 0, type 0x08 (ubyte), rank, big-endian sizes, data."""
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_split(folder, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def test_an_idx_file_reads_back_its_array_gzipped_or_not():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(array), "x-images-idx3-ubyte"), array)
    assert np.array_equal(parse_idx(gzip.compress(idx_bytes(array)), "x.gz"), array)
    with pytest.raises(DataError, match="bad magic"):
        parse_idx(b"\x01\x02\x08\x01" + bytes(8), "broken")
    with pytest.raises(DataError, match="header says"):
        parse_idx(idx_bytes(array)[:-1], "truncated")


def test_splits_are_named_by_their_images_file(tmp_path):
    rng = np.random.default_rng(0)
    write_split(tmp_path, "train", rng.integers(0, 256, (6, 28, 28)), np.array([0, 1, 2, 0, 1, 2]))
    write_split(tmp_path, "t10k", rng.integers(0, 256, (3, 28, 28)), np.array([2, 1, 0]))
    assert split_file("test", tmp_path).name == "t10k-images-idx3-ubyte.gz"
    assert labels_file(str(split_file("test", tmp_path))).endswith("t10k-labels-idx1-ubyte.gz")
    train, test = load_split("train", tmp_path), load_split("test", tmp_path)
    assert (train.images.shape, test.labels.tolist()) == ((6, 28, 28), [2, 1, 0])
    with pytest.raises(DataError, match="no t10k-images"):
        split_file("test", tmp_path / "elsewhere")


def test_an_idx_images_file_is_a_labelled_set(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    images[1, 0, 0] = 255
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([9, 0, 3])))
    space = load_label_space("fashion-mnist")
    items = list(iter_labelled(str(tmp_path / "t10k-images-idx3-ubyte"), "auto", space))
    assert [label for _, label, _ in items] == [9, 0, 3]
    assert items[1][0].mode == "RGB" and items[1][0].getpixel((0, 0)) == (255, 255, 255)
    assert items[0][2] != items[1][2]  # digests of the pixels
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([10, 0, 3])))
    with pytest.raises(DataError, match="outside label space"):
        list(iter_labelled(str(tmp_path / "t10k-images-idx3-ubyte"), "idx", space))


def shipped_keys(name: str) -> list[str]:
    with tarfile.open(shipped(name)) as tar:
        return sorted({member.name.rpartition(".")[0] for member in tar})


def test_the_shipped_subsets_hold_real_images_of_each_split_balanced():
    test, pool = read_labelled_tar(shipped(TEST_SUBSET)), read_labelled_tar(shipped(TRAIN_POOL))
    assert np.bincount(test.labels).tolist() == [TEST_PER_CLASS] * len(CLASSES)
    assert np.bincount(pool.labels).tolist() == [100] * len(CLASSES)
    assert test.images.shape[1:] == (28, 28) and 40 < test.images.mean() < 110  # Fashion-MNIST's grey level, not blank
    assert all(key.startswith("test-") for key in shipped_keys(TEST_SUBSET))
    assert all(key.startswith("train-") for key in shipped_keys(TRAIN_POOL))
    assert len(list(iter_labelled(str(shipped(TRAIN_POOL)), "auto", load_label_space("fashion-mnist")))) == 1000


@pytest.mark.skipif(
    not available(), reason="Fashion-MNIST's idx files are not installed (Debian: dataset-fashion-mnist)"
)
def test_the_shipped_subsets_are_the_splits_images_at_their_keys():
    for name, split in ((TEST_SUBSET, "test"), (TRAIN_POOL, "train")):
        full, shipped_split = load_split(split), read_labelled_tar(shipped(name))
        indices = [int(key.split("-")[1]) for key in shipped_keys(name)]
        assert np.array_equal(full.images[indices], shipped_split.images)
        assert np.array_equal(full.labels[indices], shipped_split.labels)
