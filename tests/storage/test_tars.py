import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from synthvision.models.generators.loadtest import texture
from synthvision.storage.store import Storage
from synthvision.storage.tars import (
    ImageEncoding,
    ShardWriter,
    decode_image,
    range_samples,
    read_samples,
    sample_image_bytes,
    sample_ranges,
    tar_members,
)

IMAGES = [texture(i, 96) for i in range(20)]


def write_tar(encoding: ImageEncoding, workers: int, stream=None) -> bytes:
    stream = stream or io.BytesIO()
    with ShardWriter(stream, encoding, workers, max_pending=4) as tar:
        for i, image in enumerate(IMAGES):
            tar.write(f"{i:06d}", image, {"index": i}, i % 3)
    assert tar.count == len(IMAGES)
    return stream.getvalue()


@pytest.mark.parametrize("encoding", [ImageEncoding("png"), ImageEncoding("jpg", 80), ImageEncoding("webp", 70)])
def test_the_pipelined_writer_gives_the_serial_writers_bytes(encoding):
    assert write_tar(encoding, workers=3) == write_tar(encoding, workers=0)


@pytest.mark.parametrize(
    ("encoding", "extension", "lossless"),
    [
        (ImageEncoding("png", png_compress_level=1), "png", True),
        (ImageEncoding("webp-lossless"), "webp", True),
        (ImageEncoding("jpg", 90), "jpg", False),
        (ImageEncoding("webp", 90), "webp", False),
    ],
)
def test_every_image_format_reads_back(encoding, extension, lossless):
    samples = list(read_samples(io.BytesIO(write_tar(encoding, workers=2)), "x.tar"))
    assert [s["__key__"] for s in samples] == [f"{i:06d}" for i in range(20)] and extension in samples[0]
    back = np.asarray(decode_image(sample_image_bytes(samples[7])), dtype=np.int16)
    error = np.abs(back - np.asarray(IMAGES[7], dtype=np.int16)).mean()
    assert error == 0 if lossless else 0 < error < 8


def test_png_levels_trade_bytes_for_nothing_else():
    fast, small = ImageEncoding("png", png_compress_level=1), ImageEncoding("png", png_compress_level=9)
    assert len(fast.encode(IMAGES[0])) > len(small.encode(IMAGES[0]))
    assert decode_image(fast.encode(IMAGES[0])).tobytes() == decode_image(small.encode(IMAGES[0])).tobytes()


class FailingEncoding(ImageEncoding):
    def encode(self, image: Image.Image) -> bytes:
        if image is IMAGES[9]:
            raise OSError("encoder ran out of memory")
        return super().encode(image)


class FailingStream(io.BytesIO):
    def write(self, data):
        if self.tell() > 20_000:
            raise OSError("upload failed")
        return super().write(data)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_encoding_error_fails_the_shard_and_nothing_is_committed(tmp_path, workers):
    storage = Storage(str(tmp_path))
    with pytest.raises(OSError, match="ran out of memory"):
        with storage.atomic_writer("shards/000000.tar") as stream:
            write_tar(FailingEncoding("png"), workers, stream)
    assert storage.list("shards") == []


def test_a_writing_error_in_the_writer_thread_reaches_the_caller():
    with pytest.raises(OSError, match="upload failed"):
        write_tar(ImageEncoding("png"), 2, FailingStream())


def tar_of(members: list[tuple[str, bytes]], fmt: int, compression: str = "") -> bytes:
    """A tar written by Python's `tarfile` in `fmt`, with a directory and a link among its members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}", format=fmt) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("a-link")
        link.type, link.linkname = tarfile.SYMTYPE, "x" * (150 if fmt != tarfile.USTAR_FORMAT else 50)
        tar.addfile(link)
    return buffer.getvalue()


MEMBERS = [
    ("000001.png", bytes(range(256)) * 40),
    ("000001.cls", b"3"),
    ("deep/" * 30 + "000002.json", b"{}"),  # over 100 bytes: a pax path, a GNU long name or a ustar prefix
    ("ünïcode-000003.txt", b""),
    ("000004.bin", bytes(range(251)) * (5 << 12)),  # larger than one read (4 MiB)
]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_tar_members_are_the_regular_files_tarfile_reads(fmt, compression):
    members = MEMBERS if fmt != tarfile.USTAR_FORMAT else [(n, d) for n, d in MEMBERS if n.isascii()]
    data = tar_of(members, fmt, compression)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]
    assert expected == members
    assert list(tar_members(io.BytesIO(data))) == expected


def test_a_damaged_or_cut_tar_fails_naming_the_byte():
    data = tar_of(MEMBERS[:2], tarfile.PAX_FORMAT)
    damaged = data[:600] + b"?" + data[601:]  # inside the first member's header
    with pytest.raises(tarfile.ReadError, match="at byte 512 has a bad checksum"):
        list(tar_members(io.BytesIO(damaged)))
    with pytest.raises(tarfile.ReadError, match="at byte 512 is cut short: 1000 of 10240 bytes"):
        list(tar_members(io.BytesIO(data[: 1024 + 1000])))
    with pytest.raises(tarfile.ReadError, match="at byte 0 is cut short"):
        list(tar_members(io.BytesIO(b"")))


SAMPLES = [(f"{i:06d}.{ext}", bytes([i]) * size) for i in range(7) for ext, size in (("png", 700 * i), ("cls", 1))]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("compression", ["", "gz"])
@pytest.mark.parametrize("chunk", [4 << 20, 1000])  # one read, or samples and headers across reads
@pytest.mark.parametrize("per_piece", [1, 3, 7, 50])
def test_sample_ranges_cut_a_tar_into_pieces_of_whole_samples(monkeypatch, fmt, compression, chunk, per_piece):
    """The pieces, each read as a tar of its own, give the tar's samples, `per_piece` at a time; a
    long name's extended header stays with its member."""
    monkeypatch.setattr("synthvision.storage.tars.CHUNK", chunk)
    members = [*SAMPLES[:6], ("deep/" * 30 + "000003.png", b"long name"), *SAMPLES[6:]]
    data = tar_of(members, fmt, compression)
    pieces = list(sample_ranges(io.BytesIO(data), per_piece))
    samples = [list(range_samples(piece, "u")) for piece in pieces]
    assert [sample for piece in samples for sample in piece] == list(read_samples(io.BytesIO(data), "u"))
    assert [len(piece) for piece in samples[:-1]] == [per_piece] * (len(pieces) - 1)
    assert 1 <= len(samples[-1]) <= per_piece


def test_sample_ranges_fail_on_a_damaged_tar_where_it_is_read():
    data = tar_of(SAMPLES, tarfile.PAX_FORMAT)
    damaged = data[:600] + b"?" + data[601:]
    with pytest.raises(tarfile.ReadError, match="at byte 512 has a bad checksum"):
        list(sample_ranges(io.BytesIO(damaged), 2))
