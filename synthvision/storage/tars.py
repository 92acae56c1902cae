"""WebDataset tar shards: writing samples, reading them back.

A sample is `{key}.png|jpg|webp` (the image), `{key}.json` (prompt, class, seed, generator, config
hash) and `{key}.cls` (the class id as text), the layout every WebDataset loader understands. Tar
entries carry a fixed mtime, so the same samples give a byte-identical tar and the same sha256.

Reading parses each 512-byte header once and cuts members out of 4 MiB reads (`tar_members`):
`tarfile`'s stream mode, which webdataset's reader uses, reads 10 KiB at a time and builds objects
per header, all while holding the GIL that a GPU node's decoding threads share (README: Benchmarks,
`gil_work.py`). Samples are still grouped by webdataset's own `group_by_keys`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
import tarfile
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import webdataset as wds
from PIL import Image
from webdataset.tariterators import base_plus_ext, group_by_keys

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
    """Raw samples of a tar stream: dicts of `__key__`, `__url__` and one bytes value per extension
    (names webdataset keeps for its metadata, `__...__`, are skipped as its reader skips them)."""
    return _grouped(tar_members(stream), url)


def sample_ranges(stream: IO[bytes], samples: int) -> Iterator[bytes]:
    """A tar stream cut into pieces of `samples` samples each (the last may hold fewer): the bytes of
    whole entries, which `range_samples` reads as a tar of its own.

    Only the headers are parsed here, where the stream is read and hashed: the worker that reads a
    piece cuts its members out and groups them, so the process reading the stream copies each
    member once, within one piece, instead of slicing, grouping and handing over members one by one.
    A piece ends where a sample's first entry (its extended headers included) begins, so no sample
    is split; a damaged stream fails here, as `tar_members` fails."""
    reader = _opened(stream)
    reader.hold()
    key, count = None, 0
    for name, start, _ in _regular_files(reader, keep=False):
        this = _sample_key(name)
        if this is None or this == key:
            continue
        if count == samples:
            yield reader.cut(start)
            count = 0
        key, count = this, count + 1
    if count:
        yield reader.cut(reader.offset)


def range_samples(piece: bytes, url: str) -> Iterator[dict[str, Any]]:
    """`read_samples` of a piece from `sample_ranges`."""
    members = _regular_files(_Chunks(io.BytesIO(), piece), keep=True)
    return _grouped(((name, data) for name, _, data in members), url)


def _grouped(members: Iterable[tuple[str, bytes]], url: str) -> Iterator[dict[str, Any]]:
    """Members grouped into samples by webdataset's own `group_by_keys`."""
    files = ({"fname": name, "data": data, "__url__": url} for name, data in members if not WEBDATASET_META.match(name))
    return group_by_keys(files)


def _sample_key(name: str) -> str | None:
    """The sample a member belongs to, as `group_by_keys` groups it (None: none)."""
    return None if WEBDATASET_META.match(name) else base_plus_ext(name)[0]


WEBDATASET_META = re.compile(r"__[^/]*__($|/)")
BLOCK = 512
CHUNK = 1 << 22
COMPRESSED = {b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw), b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile}


def tar_members(stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular file of a tar stream (gzip, bzip2 or xz compressed, or not), in
    order. Long names (pax `path`, GNU `L`) and pax sizes apply as `tarfile` applies them; a header
    whose checksum fails or a member cut short raises `tarfile.ReadError`, naming where."""
    return ((name, data) for name, _, data in _regular_files(_opened(stream), keep=True))


def _opened(stream: IO[bytes]) -> _Chunks:
    """The stream in chunks, decompressed if it starts with a gzip, bzip2 or xz magic."""
    reader = _Chunks(stream)
    opener = next((open_ for magic, open_ in COMPRESSED.items() if reader.peek(len(magic)) == magic), None)
    return reader if opener is None else _Chunks(opener(reader))


def _regular_files(reader: _Chunks, keep: bool) -> Iterator[tuple[str, int, bytes | None]]:
    """(name, where its first header starts, its bytes if `keep`) of each regular file."""
    extended: dict[str, str] = {}  # pax or GNU fields for the next member
    first = None  # where the next member's first header (an extended one, or its own) starts
    while True:
        at, block = reader.offset, reader.take(BLOCK)
        if (at > 0 and not block) or block == bytes(BLOCK):  # the end (two zero blocks, or none)
            return
        if len(block) < BLOCK:
            raise tarfile.ReadError(f"tar header at byte {at} is cut short: {len(block)} of {BLOCK} bytes")
        first = at if first is None else first
        name, size, kind = _header(block, at)
        if kind not in (b"x", b"g", b"L", b"K"):
            size = int(extended.get("size", size))
        regular = kind in (b"0", b"\0", b"7")  # regular files, as tarfile's isreg()
        data = reader.take(size) if kind in (b"x", b"L") or (regular and keep) else None
        got = reader.skip(size) if data is None else len(data)
        if got < size:
            raise tarfile.ReadError(f"tar member at byte {at} is cut short: {got} of {size} bytes")
        reader.skip(-size % BLOCK)
        if kind == b"x":
            extended.update(_pax_fields(data))
        elif kind == b"L":
            extended["path"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == b"g":
            first = None  # global pax fields: nothing webdataset reads, and no member's
        elif kind != b"K":  # a GNU link name belongs to the next entry
            if regular:
                yield extended.get("path", name), first, data
            extended, first = {}, None


def _header(block: bytes, at: int) -> tuple[str, int, bytes]:
    """A ustar header's name (with its prefix), size and type flag."""
    recorded = _number(block[148:156], at)
    if not _checksum_matches(recorded, block):
        raise tarfile.ReadError(f"tar header at byte {at} has a bad checksum: not a tar, or a damaged one")
    name = block[:100].split(b"\0", 1)[0]
    if block[257:265] == b"ustar\x0000":  # POSIX ustar and pax: GNU headers keep other fields there
        prefix = block[345:500].split(b"\0", 1)[0]
        name = prefix + b"/" + name if prefix else name
    return name.decode("utf-8", "surrogateescape"), _number(block[124:136], at), block[156:157]


def _checksum_matches(recorded: int, block: bytes) -> bool:
    """Whether `recorded` is the header's byte sum, its checksum field counted as spaces.

    `sum(block)` loops over 512 Python ints (3.5 µs a header, GIL held, six headers per sample); adler32
    sums the bytes in C: its low half is 1 + the sum modulo 65521. A 512-byte block sums to at most
    130,560 < 2 x 65521, so the sum is that residue or the residue + 65521."""
    residue = ((zlib.adler32(block) & 0xFFFF) - 1 - sum(block[148:156]) + 8 * 32) % 65521
    return recorded in (residue, residue + 65521)


def _number(field: bytes, at: int) -> int:
    """A header's number: octal text, or GNU base-256 for large values."""
    if field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise tarfile.ReadError(f"tar header at byte {at} is not a tar header (field {field!r})") from None


def _pax_fields(data: bytes) -> dict[str, str]:
    """A pax header's records, `LENGTH KEY=VALUE\\n` each."""
    fields, at = {}, 0
    while at < len(data) and data[at : at + 1] != b"\0":
        length = int(data[at : data.index(b" ", at)])
        key, _, value = data[data.index(b" ", at) + 1 : at + length - 1].partition(b"=")
        fields[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        at += length
    return fields


class _Chunks:
    """A stream read in large chunks, handed out in the sizes asked for; `offset` counts the bytes
    taken or skipped. A piece within one chunk is a slice of it, a skip copies nothing, and only a
    piece across chunks is joined (never a whole chunk). After `hold`, the chunks read are kept until
    `cut` hands out the bytes from the previous cut (or the hold) up to an offset."""

    def __init__(self, stream: IO[bytes], start: bytes = b""):
        """`start`: the stream's first bytes, already read (a whole piece: read in place, not copied)."""
        self._stream, self._buffer, self._base, self._at = stream, start, 0, 0  # _base: the buffer's offset
        self._held: list[tuple[int, bytes]] | None = None  # (offset, chunk) of the chunks since the hold
        self._mark = 0

    @property
    def offset(self) -> int:
        return self._base + self._at

    def peek(self, size: int) -> bytes:
        """The next `size` bytes, not taken (at the stream's start: before `hold`)."""
        if len(self._buffer) - self._at < size:
            self._buffer = self._buffer[self._at :] + self._stream.read(max(CHUNK, size))
            self._base, self._at = self.offset, 0
        return self._buffer[self._at : self._at + size]

    def take(self, size: int) -> bytes:
        """The next `size` bytes (fewer at the stream's end)."""
        at, end = self._at, self._at + size
        if end <= len(self._buffer):  # most calls: within this chunk
            self._at = end
            return self._buffer[at:end]
        return b"".join(chunk[start:stop] for chunk, start, stop in self._spans(size))

    def skip(self, size: int) -> int:
        """Pass the next `size` bytes (fewer at the stream's end); how many were passed."""
        end = self._at + size
        if end <= len(self._buffer):  # most calls: within this chunk
            self._at = end
            return size
        return sum(stop - start for _, start, stop in self._spans(size))

    def _spans(self, size: int) -> Iterator[tuple[bytes, int, int]]:
        """Move on by `size` bytes (fewer at the stream's end), across chunks: (chunk, start, stop) of
        each part passed."""
        start, self._at = self._at, min(self._at + size, len(self._buffer))
        yield self._buffer, start, self._at
        wanted = size - (self._at - start)
        while wanted > 0 and self._next_chunk():
            self._at = min(wanted, len(self._buffer))
            wanted -= self._at
            yield self._buffer, 0, self._at

    def read(self, size: int = -1) -> bytes:  # a file to a decompressor
        return self.take(size) if size >= 0 else b"".join(iter(lambda: self.take(CHUNK), b""))

    def hold(self) -> None:
        """Keep what is read from here on, for `cut`."""
        self._held, self._mark = [(self._base, self._buffer)], self.offset

    def cut(self, end: int) -> bytes:
        """The bytes from the last cut (or the hold) to `end` (at most `offset`)."""
        pieces = [
            chunk[max(self._mark - base, 0) : end - base]
            for base, chunk in self._held
            if base < end and base + len(chunk) > self._mark
        ]
        self._mark = end
        self._held = [(base, chunk) for base, chunk in self._held if base + len(chunk) > end or chunk is self._buffer]
        return b"".join(pieces)

    def _next_chunk(self) -> bool:
        """Move to the next chunk of the stream (at its start); False at the stream's end."""
        self._base += len(self._buffer)
        self._buffer, self._at = self._stream.read(CHUNK), 0
        if self._held is not None and self._buffer:
            self._held.append((self._base, self._buffer))
        return bool(self._buffer)


def sample_image_bytes(sample: dict[str, Any]) -> bytes | None:
    for extension in IMAGE_EXTENSIONS:
        if extension in sample:
            return sample[extension]
    return None


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
