"""A tiny real test set with known labels, rendered offline: one colour per class, one random shape.

Class names must be colour names PIL knows ("red", "navy", ...). Written as an image folder, so it
goes through exactly the reader a real test set uses.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageColor, ImageDraw

from synthvision.core.errors import ConfigError
from synthvision.core.label_spaces import LabelSpace
from synthvision.storage.store import Storage


def render_image(colour: str, size: int, rng: random.Random) -> Image.Image:
    background = tuple(rng.randrange(0, 256) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    x0, y0 = rng.randrange(0, size // 2), rng.randrange(0, size // 2)
    x1, y1 = rng.randrange(x0 + size // 4, size + 1), rng.randrange(y0 + size // 4, size + 1)
    shape = rng.choice([draw.rectangle, draw.ellipse])
    shape([x0, y0, x1, y1], fill=ImageColor.getrgb(colour))
    return image


def check_colour_names(label_space: LabelSpace) -> None:
    """The demo test set draws each class in its colour: every class name must be one (checked when a
    run opens, before any work)."""
    for name in label_space.classes:
        try:
            ImageColor.getrgb(name)
        except ValueError:
            raise ConfigError(f"evaluation.demo_test_set needs colour class names; {name!r} is not a colour") from None


def write_colour_test_set(
    storage: Storage, reldir: str, label_space: LabelSpace, per_class: int, size: int, seed: int
) -> str:
    """Render `per_class` images per class under `reldir/<class>/`; returns the folder's URL.

    Deterministic for a given seed, and skipped when already complete.
    """
    check_colour_names(label_space)
    rng = random.Random(seed)
    for name in label_space.classes:
        for index in range(per_class):
            image = render_image(name, size, rng)
            relpath = f"{reldir}/{name.replace(' ', '_')}/{index:04d}.png"
            if not storage.exists(relpath):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                storage.write_bytes(relpath, buffer.getvalue())
    return storage.url_of(reldir)
