"""Real labelled test sets: an image folder (`ROOT/<class name>/*.png|jpg`) or WebDataset tar(s).

Test images are encoded once; the zero-shot head and the tuned head are both scored on the same
features, so the comparison in the report differs only in the head.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import fsspec
import numpy as np
from PIL import Image

from synthvision.clip_model import ClipModel
from synthvision.errors import DataError
from synthvision.label_spaces import LabelSpace
from synthvision.shard_io import IMAGE_EXTENSIONS, decode_image, read_samples, sample_image_bytes


def _folder_class_ids(label_space: LabelSpace) -> dict[str, int]:
    """Folder names accepted for each class: the name itself, with spaces as '_', case-insensitive."""
    ids = {}
    for class_id, name in enumerate(label_space.classes):
        ids[name.lower()] = class_id
        ids[name.lower().replace(" ", "_")] = class_id
    return ids


def _image_folder(fs, root: str, label_space: LabelSpace) -> Iterator[tuple[bytes, int]]:
    class_ids = _folder_class_ids(label_space)
    folders = sorted(entry for entry in fs.ls(root, detail=False) if fs.isdir(entry))
    if not folders:
        raise DataError(f"evaluation.test_set {root}: no class folders (expected ROOT/<class name>/*.png)")
    for folder in folders:
        name = posixpath.basename(folder.rstrip("/"))
        if name.lower() not in class_ids:
            raise DataError(f"evaluation.test_set: folder {name!r} in {root} is not a class of label space {label_space.name}")
        for path in sorted(fs.ls(folder, detail=False)):
            if path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                yield fs.cat_file(path), class_ids[name.lower()]


def _webdataset(fs, root: str, label_space: LabelSpace) -> Iterator[tuple[bytes, int]]:
    tars = [root] if root.endswith(".tar") else sorted(p for p in fs.ls(root, detail=False) if p.endswith(".tar"))
    if not tars:
        raise DataError(f"evaluation.test_set {root}: no .tar files")
    for tar in tars:
        with fs.open(tar, "rb") as stream:
            for sample in read_samples(stream, tar):
                data = sample_image_bytes(sample)
                if data is None or "cls" not in sample:
                    raise DataError(f"evaluation.test_set {tar}: sample {sample.get('__key__')} lacks an image or .cls")
                label = int(sample["cls"])
                if not 0 <= label < label_space.num_classes:
                    raise DataError(f"evaluation.test_set {tar}: sample {sample['__key__']} has class {label} outside the label space")
                yield data, label


def iter_test_set(url: str, fmt: str, label_space: LabelSpace, storage_options: dict | None = None) -> Iterator[tuple[Image.Image, int]]:
    """(image, class id) pairs of a test set, read through fsspec (local or remote)."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if not fs.exists(root):
        raise DataError(f"evaluation.test_set {url} does not exist")
    if fmt == "auto":
        fmt = "webdataset" if root.endswith(".tar") or any(p.endswith(".tar") for p in fs.ls(root, detail=False)) else "imagefolder"
    reader = _webdataset if fmt == "webdataset" else _image_folder
    for data, label in reader(fs, root, label_space):
        try:
            yield decode_image(data), label
        except Exception as error:
            raise DataError(f"evaluation.test_set {url}: an image of class {label} does not decode ({error})") from None


def encode_test_set(
    clip: ClipModel, url: str, fmt: str, label_space: LabelSpace, batch_size: int, storage_options: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features (N x D) and labels (N) of the whole test set."""
    features, labels, images = [], [], []
    for image, label in iter_test_set(url, fmt, label_space, storage_options):
        images.append(image)
        labels.append(label)
        if len(images) == batch_size:
            features.append(clip.encode_images(images))
            images = []
    if images:
        features.append(clip.encode_images(images))
    if not labels:
        raise DataError(f"evaluation.test_set {url} holds no images")
    return np.concatenate(features), np.asarray(labels, dtype=np.int64)
