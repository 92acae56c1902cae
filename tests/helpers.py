"""Test helpers that are not fixtures."""

from __future__ import annotations

from collections import Counter

from synthvision import run
from synthvision.models import clip as clip_model
from synthvision.models.generators import base as generators
from synthvision.models.generators.diffusers_backend import DiffusersGenerator


class ModelCounter:
    """Counts model loads and generated images in this process, starting from empty model caches,
    so that a test sees exactly the model work a flow run does."""

    def __init__(self, monkeypatch):
        generators.load_generator.cache_clear()
        clip_model.load_clip.cache_clear()
        run.open_run.cache_clear()
        self.loads: Counter[str] = Counter()
        self.images = 0
        real_from_config, real_load, real_generate = (
            DiffusersGenerator.from_config.__func__,
            clip_model.ClipModel.load.__func__,
            DiffusersGenerator.generate,
        )

        def from_config(cls, config):
            self.loads["generator"] += 1
            return real_from_config(cls, config)

        def load(cls, config):
            self.loads["clip"] += 1
            return real_load(cls, config)

        def generate(generator, prompts, seeds):
            self.images += len(prompts)
            return real_generate(generator, prompts, seeds)

        monkeypatch.setattr(DiffusersGenerator, "from_config", classmethod(from_config))
        monkeypatch.setattr(clip_model.ClipModel, "load", classmethod(load))
        monkeypatch.setattr(DiffusersGenerator, "generate", generate)
