"""The generator interface and the factory that picks a backend from config.

A generator turns a batch of prompts, one seed per image, into images. The seed alone fixes an image
(each image gets its own `torch.Generator`), so a shard is reproducible whatever the batching.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from synthvision.core.data_config import GeneratorConfig
from synthvision.core.memo import once_per_config

if TYPE_CHECKING:
    from PIL import Image


class Generator(Protocol):
    batch_size: int

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]: ...

    def generate_guided(
        self, prompts: list[str], seeds: list[int], references: list[Image.Image], strength: float
    ) -> list[Image.Image]:
        """Real guidance (SDEdit): each reference noised to `strength` (t* / T) of the schedule, then
        denoised with its prompt. At strength 1 the reference is unused: text-to-image from the seed."""
        ...


@once_per_config
def load_generator(config: GeneratorConfig) -> Generator:
    """The generator for `config`, loaded once per process: shard tasks of a run share one model."""
    if config.backend == "loadtest":
        from synthvision.models.generators.loadtest import LoadTestGenerator

        return LoadTestGenerator.from_config(config)
    if config.backend == "glide":
        from synthvision.models.generators.glide.backend import GlideGenerator

        return GlideGenerator.from_config(config)
    from synthvision.models.generators.diffusers_backend import DiffusersGenerator

    return DiffusersGenerator.from_config(config)
