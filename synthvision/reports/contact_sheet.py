"""A contact sheet per run: a grid of the first generated images, each captioned with its prompt, so a
person can see at a glance what a run is producing (linked from a Prefect markdown artifact)."""

from __future__ import annotations

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


def write_contact_sheet(storage: Storage, manifests: list[Manifest], count: int = 32) -> str | None:
    """Render the first `count` samples of the committed shards to CONTACT_SHEET; returns its URL."""
    samples: list[tuple[Image.Image, str]] = []
    for manifest in manifests:
        with storage.open(manifest.data_file) as stream:
            for sample in read_samples(stream, storage.url_of(manifest.data_file)):
                samples.append((decode_image(sample_image_bytes(sample)), json.loads(sample["json"])["prompt"]))
                if len(samples) == count:
                    break
        if len(samples) == count:
            break
    if not samples:
        return None
    buffer = io.BytesIO()
    render(samples).save(buffer, format="PNG")
    storage.write_bytes(CONTACT_SHEET, buffer.getvalue())
    return storage.url_of(CONTACT_SHEET)
