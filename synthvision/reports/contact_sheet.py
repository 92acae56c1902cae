"""A contact sheet per run: a grid of generated images, each captioned with its prompt, so a person can
see at a glance what a run is producing. Its markdown embeds the sheet itself (a JPEG data URI): the
Prefect UI cannot serve a file of the run's storage, be it a local path or a private bucket."""

from __future__ import annotations

import base64
import io
import json
import textwrap

from PIL import Image, ImageDraw, ImageFont

from synthvision.core.manifest import Manifest
from synthvision.storage.store import Storage
from synthvision.storage.tars import decode_image, read_samples, sample_image_bytes

CONTACT_SHEET = "contact_sheet.png"
LINE_HEIGHT = 12


def render(
    samples: list[tuple[Image.Image, str]], columns: int = 8, cell: int = 128, caption_lines: int = 3
) -> Image.Image:
    """Images as `cell`-pixel squares in rows of `columns`, each with its caption wrapped beneath."""
    rows = -(-len(samples) // columns)
    row_height = cell + caption_lines * LINE_HEIGHT + 4
    sheet = Image.new("RGB", (columns * cell, rows * row_height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, (image, caption) in enumerate(samples):
        x, y = (index % columns) * cell, (index // columns) * row_height
        sheet.paste(image.resize((cell, cell)), (x, y))
        for line_number, line in enumerate(textwrap.wrap(caption, width=cell // 6)[:caption_lines]):
            draw.text((x + 2, y + cell + 2 + line_number * LINE_HEIGHT), line, fill="black", font=font)
    return sheet


def _samples(storage: Storage, manifests: list[Manifest], count: int) -> list[tuple[Image.Image, str]]:
    """The first `count` images of the shards, in order, with their prompts."""
    samples: list[tuple[Image.Image, str]] = []
    for manifest in manifests:
        with storage.open(manifest.data_file) as stream:
            for sample in read_samples(stream, storage.url_of(manifest.data_file)):
                samples.append((decode_image(sample_image_bytes(sample)), json.loads(sample["json"])["prompt"]))
                if len(samples) == count:
                    break
        if len(samples) == count:
            break
    return samples


def write_contact_sheet(storage: Storage, manifests: list[Manifest], count: int = 32) -> Image.Image | None:
    """Render the first `count` samples of the committed shards to CONTACT_SHEET; returns the sheet."""
    samples = _samples(storage, manifests, count)
    if not samples:
        return None
    sheet = render(samples)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    storage.write_bytes(CONTACT_SHEET, buffer.getvalue())
    return sheet


def contact_sheet_markdown(storage: Storage, manifests: list[Manifest], heading: str, count: int = 32) -> str | None:
    """Write the contact sheet of the shards' first `count` images; returns markdown that shows it
    inline (a JPEG data URI, about 100 KB for 32 images) and names the full PNG's location."""
    sheet = write_contact_sheet(storage, manifests, count)
    if sheet is None:
        return None
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=85)
    inline = base64.b64encode(buffer.getvalue()).decode("ascii")
    shards = ", ".join(manifest.shard for manifest in manifests)
    return (
        f"# {heading}\n\n{min(count, sum(m.count for m in manifests))} images of {shards}, each with its prompt. "
        f"Full size: `{storage.url_of(CONTACT_SHEET)}`\n\n![contact sheet](data:image/jpeg;base64,{inline})\n"
    )
