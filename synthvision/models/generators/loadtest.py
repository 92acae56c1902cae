"""A load-test generator: cheap deterministic images after a fixed wait per batch, no model.

It stands in for a GPU model at full scale: planning, fan-out, encoding, storage and `status` run
exactly as with a real model, and `seconds_per_batch` plays the model's time (a sleep releases the GIL
as a GPU sync does), so a benchmark can tell how busy the pipeline keeps the model. Its images are 64
textures (smooth colour fields with a little noise, compressing about as a photo does), picked by seed.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from synthvision.core.data_config import GeneratorConfig

TEXTURES = 64


def texture(index: int, resolution: int) -> Image.Image:
    """Texture `index`: a 16 x 16 random colour grid upsampled bicubically, plus noise of amplitude 12."""
    rng = np.random.default_rng(index)
    grid = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    smooth = np.asarray(grid.resize((resolution, resolution), Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = smooth + rng.integers(-6, 7, smooth.shape, dtype=np.int16)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


class LoadTestGenerator:
    def __init__(self, resolution: int, batch_size: int, seconds_per_batch: float):
        self.batch_size = batch_size
        self.seconds_per_batch = seconds_per_batch
        self._textures = [texture(index, resolution) for index in range(TEXTURES)]

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> LoadTestGenerator:
        return cls(config.resolution, config.batch_size, config.seconds_per_batch)

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        time.sleep(self.seconds_per_batch)  # the model's time
        return [self._textures[seed % TEXTURES].copy() for seed in seeds]

    def generate_guided(
        self, prompts: list[str], seeds: list[int], references: list[Image.Image], strength: float
    ) -> list[Image.Image]:
        return self.generate(prompts, seeds)
