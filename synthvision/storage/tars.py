"""WebDataset tar shards: writing samples, reading them back.

A sample is `{key}.png|jpg|webp` (the image), `{key}.json` (prompt, class, seed, generator, config
hash) and `{key}.cls` (the class id as text), the layout every WebDataset loader understands. Tar
entries carry a fixed mtime, so the same samples give a byte-identical tar and the same sha256.
"""

from __future__ import annotations

import io
import json
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import webdataset as wds
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_iterator

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")


@dataclass(frozen=True)
class ImageEncoding:
    """How generated images are stored. PNG and lossless WebP keep every pixel; JPEG and lossy WebP
    trade pixels for bytes and encoding time (README: Benchmarks measures each)."""

    format: str = "png"  # png, jpg, webp, webp-lossless
    quality: int = 95  # jpg and lossy webp
    png_compress_level: int = 6  # zlib level 0-9; 6 is Pillow's default

    @property
    def extension(self) -> str:
        return "webp" if self.format.startswith("webp") else self.format

    def encode(self, image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        if self.format == "png":
            image.save(buffer, format="PNG", compress_level=self.png_compress_level)
        elif self.format == "jpg":
            image.convert("RGB").save(buffer, format="JPEG", quality=self.quality)
        elif self.format == "webp":
            image.save(buffer, format="WEBP", quality=self.quality)
        elif self.format == "webp-lossless":
            image.save(buffer, format="WEBP", lossless=True)
        else:
            raise ValueError(f"unknown image format {self.format!r}")
        return buffer.getvalue()


class ShardWriter:
    """Writes samples into one tar stream (the caller owns the stream and its atomic commit).

    With `workers`, `write` returns at once: `workers` threads encode the images and one thread writes
    them into the tar in the order given, while the caller's thread goes back to the model. At most
    `max_pending` samples wait (bounded memory). An encoding or writing error is raised by a later
    `write` or by leaving the `with` block, and stops the writing: the caller's atomic writer then
    discards the partial tar, so no half shard is ever visible.
    """

    def __init__(self, stream: IO[bytes], encoding: ImageEncoding, workers: int = 0, max_pending: int = 64):
        self._tar = wds.TarWriter(stream, encoder=False, mtime=0.0)
        self.encoding = encoding
        self.count = 0
        self._max_pending = max(max_pending, 1)
        self._pending: deque[Future[None]] = deque()
        self._failed = threading.Event()
        self._encoders = ThreadPoolExecutor(workers, "synthvision-encode") if workers > 0 else None
        self._writer = ThreadPoolExecutor(1, "synthvision-write") if workers > 0 else None

    def write(self, key: str, image: Image.Image, meta: dict[str, Any], class_id: int) -> None:
        if self._encoders is None:
            self._write_sample(key, self.encoding.encode(image), meta, class_id)
            return
        encoded = self._encoders.submit(self.encoding.encode, image)
        self._pending.append(self._writer.submit(self._write_when_encoded, key, encoded, meta, class_id))
        while self._pending and (len(self._pending) > self._max_pending or self._pending[0].done()):
            self._pending.popleft().result()  # raises the writing's first error here, in the caller's thread

    def _write_when_encoded(self, key: str, encoded: Future[bytes], meta: dict[str, Any], class_id: int) -> None:
        if self._failed.is_set():
            return  # an earlier sample failed: nothing more goes into this tar
        try:
            self._write_sample(key, encoded.result(), meta, class_id)
        except BaseException:
            self._failed.set()
            raise

    def _write_sample(self, key: str, data: bytes, meta: dict[str, Any], class_id: int) -> None:
        self._tar.write(
            {
                "__key__": key,
                self.encoding.extension: data,
                "json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"),
                "cls": str(class_id).encode("ascii"),
            }
        )
        self.count += 1

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        try:
            if self._encoders is not None:
                try:
                    while exc_type is None and self._pending:
                        self._pending.popleft().result()
                finally:
                    self._failed.set()  # on any failure, queued samples write nothing
                    self._encoders.shutdown(wait=True, cancel_futures=True)
                    self._writer.shutdown(wait=True, cancel_futures=True)
        finally:
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
