"""A load-test CLIP (`clip.model: loadtest`): open_clip's RN50 preprocessing, a fixed wait per batch,
and cheap deterministic features, no model.

With the load-test generator it runs the score stage at full scale without weights, and it lets a
benchmark tell how busy scoring keeps a model: the wait plays the model's time (a sleep releases the
GIL as a GPU sync does), while decoding and preprocessing are the real ones (224 px, bicubic resize,
centre crop, OpenAI's mean and std).
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import open_clip
import torch
from PIL import Image

from synthvision.models.pixels import Pixels

WIDTH = 16  # embedding width


class LoadTestClip:
    name = "loadtest"
    logit_scale = 100.0
    device = torch.device("cpu")

    def __init__(self, seconds_per_batch: float, image_size: int = 224):
        self.seconds_per_batch = seconds_per_batch
        self.preprocess = open_clip.image_transform(image_size, is_train=False)
        self.pixels = Pixels.split(self.preprocess)
        self._projection = torch.from_numpy(np.random.default_rng(0).standard_normal((3, WIDTH), dtype=np.float32))

    def text_classifier(self, class_names: tuple[str, ...], templates: list[str]) -> np.ndarray:
        """A unit vector per class, seeded by its name."""
        rows = [np.random.default_rng(zlib.crc32(name.encode())).standard_normal(WIDTH) for name in class_names]
        embeddings = np.asarray(rows, dtype=np.float32)
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Features of a batch of uint8 pixels (`ClipModel.encode_pixels`), after the model's time: the
        projected mean of the model's input, computed as the mean pixel's input (the scaling and the
        normalisation are affine per channel), since a GPU would make the floats, not this CPU."""
        time.sleep(self.seconds_per_batch)
        mean_pixel = pixels.mean(dim=(1, 2), dtype=torch.float32)[:, None, None, :]  # N x 1 x 1 x 3
        return (self.pixels.floats(mean_pixel).flatten(1) @ self._projection).numpy()

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.encode_pixels(self.pixels.batch(images))
