"""Real labelled image sets (a test set, a few-shot pool): an image folder (`ROOT/<class name>/*.png|jpg`),
WebDataset tar(s), or an idx images file with its labels file beside it (MNIST, Fashion-MNIST).

Test images are encoded once; the zero-shot head and the tuned head are both scored on the same
features, so the comparison in the report differs only in the head. Each image also gets a digest of
its file bytes, so a few-shot pool can be checked to share no image with the test set.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
from PIL import Image

from synthvision.core.batching import batched
from synthvision.core.errors import DataError
from synthvision.core.label_spaces import LabelSpace
from synthvision.models.clip import ClipModel
from synthvision.storage.tars import IMAGE_EXTENSIONS, decode_image, read_samples, sample_image_bytes


def _folder_class_ids(label_space: LabelSpace) -> dict[str, int]:
    """Folder names accepted for each class: the name itself, with spaces (and '/', which no folder name can
    hold: Aircraft's "F/A-18") as '_', case-insensitive."""
    ids = {}
    for class_id, name in enumerate(label_space.classes):
        ids[name.lower()] = class_id
        ids[name.lower().replace(" ", "_")] = class_id
        ids[name.lower().replace(" ", "_").replace("/", "_")] = class_id
    return ids


def _image_folder(fs, root: str, label_space: LabelSpace, field: str) -> Iterator[tuple[bytes, int, str]]:
    class_ids = _folder_class_ids(label_space)
    folders = sorted(entry for entry in fs.ls(root, detail=False) if fs.isdir(entry))
    if not folders:
        raise DataError(f"{field} {root}: no class folders (expected ROOT/<class name>/*.png)")
    for folder in folders:
        name = posixpath.basename(folder.rstrip("/"))
        if name.lower() not in class_ids:
            raise DataError(f"{field}: folder {name!r} in {root} is not a class of label space {label_space.name}")
        for path in sorted(fs.ls(folder, detail=False)):
            if path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                yield fs.cat_file(path), class_ids[name.lower()], path


def _webdataset(fs, root: str, label_space: LabelSpace, field: str) -> Iterator[tuple[bytes, int, str]]:
    tars = [root] if root.endswith(".tar") else sorted(p for p in fs.ls(root, detail=False) if p.endswith(".tar"))
    if not tars:
        raise DataError(f"{field} {root}: no .tar files")
    for tar in tars:
        with fs.open(tar, "rb") as stream:
            for sample in read_samples(stream, tar):
                data = sample_image_bytes(sample)
                if data is None or "cls" not in sample:
                    raise DataError(f"{field} {tar}: sample {sample.get('__key__')} lacks an image or .cls")
                label = int(sample["cls"])
                if not 0 <= label < label_space.num_classes:
                    raise DataError(
                        f"{field} {tar}: sample {sample['__key__']} has class {label} outside the label space"
                    )
                yield data, label, f"{tar} sample {sample['__key__']}"


def _idx(fs, root: str, label_space: LabelSpace, field: str) -> Iterator[tuple[bytes | Image.Image, int, str]]:
    from synthvision.datasets.fashion_mnist import labels_file, parse_split

    companion = labels_file(root)
    if not fs.exists(companion):
        raise DataError(f"{field} {root}: no labels file {companion} beside it")
    split = parse_split(fs.cat_file(root), fs.cat_file(companion), root)
    if split.labels.max() >= label_space.num_classes:
        raise DataError(f"{field} {root}: class {split.labels.max()} is outside label space {label_space.name}")
    for index, (pixels, label) in enumerate(zip(split.images, split.labels, strict=True)):
        yield Image.fromarray(pixels), int(label), f"{root} image {index}"


def _format_of(fs, root: str) -> str:
    from synthvision.datasets.fashion_mnist import is_idx_images

    if is_idx_images(root):
        return "idx"
    if root.endswith(".tar") or any(p.endswith(".tar") for p in fs.ls(root, detail=False)):
        return "webdataset"
    return "imagefolder"


READERS = {"imagefolder": _image_folder, "webdataset": _webdataset, "idx": _idx}


def iter_labelled(
    url: str, fmt: str, label_space: LabelSpace, storage_options: dict | None = None, field: str = "evaluation.test_set"
) -> Iterator[tuple[Image.Image, int, str]]:
    """(RGB image, class id, digest of its bytes) of a labelled set, read through fsspec; errors name
    `field`. The digest is of the image file, or of the raw pixels for an idx set."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if not fs.exists(root):
        raise DataError(f"{field} {url} does not exist")
    for data, label, name in READERS[_format_of(fs, root) if fmt == "auto" else fmt](fs, root, label_space, field):
        if isinstance(data, Image.Image):
            yield data.convert("RGB"), label, hashlib.sha256(data.tobytes()).hexdigest()
            continue
        try:
            image = decode_image(data)
        except Exception as error:
            raise DataError(f"{field}: image {name} does not decode ({type(error).__name__}: {error})") from None
        yield image, label, hashlib.sha256(data).hexdigest()


def iter_test_set(
    url: str, fmt: str, label_space: LabelSpace, storage_options: dict | None = None
) -> Iterator[tuple[Image.Image, int]]:
    """(image, class id) pairs of a test set."""
    for image, label, _ in iter_labelled(url, fmt, label_space, storage_options):
        yield image, label


@dataclass(frozen=True)
class EncodedSet:
    features: np.ndarray  # N x D CLIP image features
    labels: np.ndarray  # N class ids
    digests: list[str]  # sha256 of each image file
    images: list[Image.Image] | None = None  # the decoded images, when asked to keep them


def read_labelled(
    url: str,
    fmt: str,
    label_space: LabelSpace,
    storage_options: dict | None = None,
    field: str = "evaluation.test_set",
    keep_images: bool = False,
) -> tuple[list[Image.Image], np.ndarray, list[str]]:
    """The images (with `keep_images`; else none are kept), class ids and digests of a whole labelled
    set, none encoded: enough to draw a few shots from a large pool and check it against a test set
    before encoding only those."""
    images, labels, digests = [], [], []
    for image, label, digest in iter_labelled(url, fmt, label_space, storage_options, field):
        images += [image] if keep_images else []
        labels.append(label)
        digests.append(digest)
    if not labels:
        raise DataError(f"{field} {url} holds no images")
    return images, np.asarray(labels, dtype=np.int64), digests


def encode_labelled(
    clip: ClipModel,
    url: str,
    fmt: str,
    label_space: LabelSpace,
    batch_size: int,
    storage_options: dict | None = None,
    field: str = "evaluation.test_set",
    keep_images: bool = False,
    positions: np.ndarray | None = None,
) -> EncodedSet:
    """CLIP features, labels and digests of a labelled set, encoded in batches (and the images
    themselves with `keep_images`, for training that runs the image tower); with `positions` (sorted
    indices into the set), of those images only, in that order."""
    features, labels, digests, kept = [], [], [], []
    items = iter_labelled(url, fmt, label_space, storage_options, field)
    if positions is not None:
        wanted = set(positions.tolist())
        items = (item for index, item in enumerate(items) if index in wanted)
    for batch in batched(items, batch_size):
        images = [image for image, _, _ in batch]
        features.append(clip.encode_images(images))
        labels += [label for _, label, _ in batch]
        digests += [digest for _, _, digest in batch]
        kept += images if keep_images else []
    if not labels:
        raise DataError(f"{field} {url} holds no images")
    return EncodedSet(
        np.concatenate(features), np.asarray(labels, dtype=np.int64), digests, kept if keep_images else None
    )


def encode_test_set(
    clip: ClipModel, url: str, fmt: str, label_space: LabelSpace, batch_size: int, storage_options: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features (N x D) and labels (N) of the whole test set."""
    encoded = encode_labelled(clip, url, fmt, label_space, batch_size, storage_options)
    return encoded.features, encoded.labels
