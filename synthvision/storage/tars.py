"""WebDataset tar shards: writing samples, reading them back.

A sample is `{key}.png|jpg` (the image), `{key}.json` (prompt, class, seed, generator, config hash)
and `{key}.cls` (the class id as text), the layout every WebDataset loader understands. Tar entries
carry a fixed mtime, so the same samples give a byte-identical tar and the same sha256.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import IO, Any

import webdataset as wds
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_iterator

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")


def encode_image(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG")
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class ShardWriter:
    """Writes samples into one tar stream (the caller owns the stream and its atomic commit)."""

    def __init__(self, stream: IO[bytes], image_format: str):
        self._tar = wds.TarWriter(stream, encoder=False, mtime=0.0)
        self.image_format = image_format
        self.count = 0

    def write(self, key: str, image: Image.Image, meta: dict[str, Any], class_id: int) -> None:
        self._tar.write(
            {
                "__key__": key,
                self.image_format: encode_image(image, self.image_format),
                "json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"),
                "cls": str(class_id).encode("ascii"),
            }
        )
        self.count += 1

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        # Closed on failure too: an unclosed tar would write its trailer later, into a closed file.
        self._tar.close()


def read_samples(stream: IO[bytes], url: str) -> Iterator[dict[str, Any]]:
    """Raw samples of a tar stream: dicts of `__key__`, `__url__` and one bytes value per extension."""
    files = ({**entry, "__url__": url} for entry in tar_file_iterator(stream))
    return group_by_keys(files)


def sample_image_bytes(sample: dict[str, Any]) -> bytes | None:
    for extension in IMAGE_EXTENSIONS:
        if extension in sample:
            return sample[extension]
    return None


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
