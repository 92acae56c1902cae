"""The diffusers backend: any text-to-image `DiffusionPipeline`, from a hub id or a local folder.

We wrap the pipeline, never fork it: one call per batch with classifier-free guidance, steps,
resolution and one `torch.Generator` per image.
"""

from __future__ import annotations

import threading
from functools import cached_property

import torch
from diffusers import AutoPipelineForImage2Image, DiffusionPipeline
from PIL import Image

from synthvision.core.data_config import GeneratorConfig
from synthvision.core.errors import ConfigError, ModelLoadError
from synthvision.models.devices import resolve_device, resolve_dtype
from synthvision.models.weights import resolve_model_source


def load_pipeline(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    """`DiffusionPipeline.from_pretrained` with errors that say what to do when offline."""
    source = resolve_model_source(model, "generator.model")
    try:
        return DiffusionPipeline.from_pretrained(source, dtype=dtype)
    except OSError as error:
        raise ModelLoadError(
            f"generator.model: could not load diffusers pipeline {model!r} ({str(error).splitlines()[0]}). "
            "Without internet access, download it elsewhere (`huggingface-cli download ID --local-dir DIR`) "
            "and set generator.model to that folder."
        ) from None


class DiffusersGenerator:
    def __init__(self, pipeline: DiffusionPipeline, config: GeneratorConfig):
        """`pipeline` must already be in the configured dtype (diffusers keeps some modules in
        float32 when loading with `dtype`, which a later cast would undo)."""
        self.device = resolve_device(config.device)
        self.pipeline = pipeline.to(self.device)
        self.pipeline.set_progress_bar_config(disable=True)
        if config.compile:
            for name in ("unet", "transformer"):  # the denoiser: where a sampling step spends its time
                if getattr(self.pipeline, name, None) is not None:
                    getattr(self.pipeline, name).compile()
        self.config = config
        self.batch_size = config.batch_size
        # A pipeline keeps a call's state on itself (its tokenizer's padding, its scheduler's steps):
        # two threads calling it at once corrupt each other's call. A run's shard threads share one
        # generator, and without a GPU limit nothing else keeps them from calling it together.
        self._one_call = threading.Lock()

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> DiffusersGenerator:
        dtype = resolve_dtype(config.dtype, resolve_device(config.device))
        if config.backend == "tiny":
            from synthvision.models.generators.tiny import build_tiny_pipeline

            pipeline = build_tiny_pipeline()
            return cls(pipeline if dtype == torch.float32 else pipeline.to(dtype=dtype), config)
        return cls(load_pipeline(config.model, dtype), config)

    def _fit(self, prompts: list[str]) -> list[str]:
        """Each prompt, or its longest prefix that fits the text encoder's context. The pipeline would
        cut an over-long prompt itself, but would also log it in full (10k characters a line)."""
        tokenizer = getattr(self.pipeline, "tokenizer", None)
        if tokenizer is None:
            return prompts

        def fits(text: str) -> bool:
            return len(tokenizer(text, verbose=False).input_ids) <= tokenizer.model_max_length

        fitted = []
        for prompt in prompts:
            if fits(prompt):  # nearly always: one tokenisation
                fitted.append(prompt)
                continue
            low, high = 0, len(prompt)  # binary search on the prefix length: fits(prompt[:low]) holds
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(prompt[:middle]) else (low, middle - 1)
            fitted.append(prompt[:low])
        return fitted

    @cached_property
    def image_to_image(self) -> DiffusionPipeline:
        """The same components as an img2img pipeline (no second copy of the weights)."""
        pipeline = AutoPipelineForImage2Image.from_pipe(self.pipeline)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    @torch.inference_mode()
    def generate_guided(
        self, prompts: list[str], seeds: list[int], references: list[Image.Image], strength: float
    ) -> list[Image.Image]:
        if strength >= 1:
            return self.generate(prompts, seeds)
        if int(self.config.steps * strength) < 1:
            raise ConfigError(
                f"real guidance: generator.steps ({self.config.steps}) x t*/100 ({strength}) is less than one "
                "denoising step"
            )
        size = (self.config.resolution, self.config.resolution)
        with self._one_call:  # the img2img pipeline shares the text-to-image one's components
            output = self.image_to_image(
                prompt=self._fit(prompts),
                image=[reference.convert("RGB").resize(size, Image.Resampling.BICUBIC) for reference in references],
                strength=strength,
                num_inference_steps=self.config.steps,
                guidance_scale=self.config.guidance_scale,
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
                output_type="pil",
            )
        return output.images

    @torch.inference_mode()
    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        # CPU generators are portable: the same seed gives the same initial noise on any device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        with self._one_call:
            output = self.pipeline(
                prompt=self._fit(prompts),
                num_inference_steps=self.config.steps,
                guidance_scale=self.config.guidance_scale,
                height=self.config.resolution,
                width=self.config.resolution,
                generator=generators,
                output_type="pil",
            )
        return output.images
