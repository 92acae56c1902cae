"""The generator interface and the factory that picks a backend from config.

A generator turns a batch of prompts, one seed per image, into images. The seed alone fixes an image
(each image gets its own `torch.Generator`), so a shard is reproducible whatever the batching.
"""

from __future__ import annotations

import threading
from typing import Protocol

from PIL import Image

from synthvision.config import GeneratorConfig


class Generator(Protocol):
    name: str  # recorded in every sample's metadata
    batch_size: int

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]: ...


_cache: dict[str, Generator] = {}
_lock = threading.Lock()


def load_generator(config: GeneratorConfig) -> Generator:
    """The generator for `config`, loaded once per process: shard tasks of a run share one model."""
    key = config.model_dump_json()
    with _lock:
        if key not in _cache:
            from synthvision.generators.diffusers_backend import DiffusersGenerator

            _cache[key] = DiffusersGenerator.from_config(config)
        return _cache[key]
