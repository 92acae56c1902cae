"""The GLIDE backend: the paper's generator (GLIDE filtered, A.1.2 / A.7.1).

A 64 px base model sampled with 100 respaced steps and classifier-free guidance (s = 3: the
conditional and the empty-prompt halves run as one batch), then the 64 -> 256 px upsampler with the
27-step "fast27" schedule, conditioned on the prompt, starting from noise scaled by 0.997. Real
guidance (`generate_guided`) noises a real image to step t* of the base schedule and denoises from
there. Every image has its own CPU `torch.Generator`, so its seed alone fixes it.

Weights come from a local folder (they cannot be downloaded at run time):
    base.pt, upsample.pt        the released checkpoints (or base/upsample.safetensors)
    encoder.json, vocab.bpe     the tokenizer files (or .gz, as shipped in glide-text2im)
    glide.json                  only for other architectures (the tiny test models)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file as load_safetensors

from synthvision.core.data_config import GeneratorConfig
from synthvision.core.errors import ModelLoadError
from synthvision.models.devices import resolve_device, resolve_dtype
from synthvision.models.generators.glide.diffusion import SpacedDiffusion
from synthvision.models.generators.glide.model import RELEASED_BASE, RELEASED_UPSAMPLER, GlideArchitecture, GlideUNet
from synthvision.models.generators.glide.tiny import ARCHITECTURE_FILE, build_tiny_glide
from synthvision.models.generators.glide.tokenizer import MERGES_FILE, VOCAB_FILE, GlideTokenizer

RELEASE_URL = "https://openaipublic.blob.core.windows.net/diffusion/dec-2021"


@dataclass
class GlideModels:
    base: GlideUNet
    upsampler: GlideUNet
    tokenizer: GlideTokenizer


def _architecture(record: dict) -> GlideArchitecture:
    return GlideArchitecture(
        **{
            **record,
            "channel_mult": tuple(record["channel_mult"]),
            "attention_resolutions": tuple(record["attention_resolutions"]),
        }
    )


def _load_state_dict(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    """`stem`.safetensors if present, else the released `stem`.pt, loaded as tensors only."""
    if (folder / f"{stem}.safetensors").is_file():
        return load_safetensors(folder / f"{stem}.safetensors")
    path = folder / f"{stem}.pt"
    if not path.is_file():
        raise ModelLoadError(
            f"generator.model: {folder} has no {stem}.pt. Download {RELEASE_URL}/{stem}.pt on a machine with "
            f"internet access and put it in that folder."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickler refusal or a truncated file: either way not loadable weights
        raise ModelLoadError(
            f"generator.model: {path} is not a tensors-only state dict: torch.load(weights_only=True) refused it "
            f"({str(error).splitlines()[0]}). Only safetensors and tensors-only .pt files are loaded"
        ) from None


def _model(folder: Path, stem: str, arch: GlideArchitecture) -> GlideUNet:
    with torch.device("meta"):
        model = GlideUNet(arch)
    state = _load_state_dict(folder, stem)
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ModelLoadError(
            f"generator.model: {folder / stem}: not a GLIDE {'upsampler' if arch.super_res else 'base'} "
            "checkpoint of this "
            f"architecture (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as error:
        raise ModelLoadError(f"generator.model: {folder / stem}: {str(error).splitlines()[-1].strip()}") from None
    return model.eval()


def missing_glide_files(folder: Path) -> list[str]:
    """The files a GLIDE weights folder lacks: each checkpoint (.safetensors or the released .pt) and
    the tokenizer's two files (plain or .gz); all of them when there is no such folder."""
    wanted = {
        "base.pt": ("base.safetensors", "base.pt"),
        "upsample.pt": ("upsample.safetensors", "upsample.pt"),
        f"{VOCAB_FILE}.gz": (VOCAB_FILE, f"{VOCAB_FILE}.gz"),
        f"{MERGES_FILE}.gz": (MERGES_FILE, f"{MERGES_FILE}.gz"),
    }
    return [name for name, choices in wanted.items() if not any((folder / c).is_file() for c in choices)]


def load_glide_models(model: str) -> GlideModels:
    """The base model, upsampler and tokenizer from a local folder, or the tiny ones for `tiny`."""
    if model == "tiny":
        return GlideModels(*build_tiny_glide())
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(
            f"generator.model: {model!r} is not a folder. GLIDE weights cannot be downloaded here: put base.pt and "
            f"upsample.pt ({RELEASE_URL}/) and the tokenizer's encoder.json.gz and vocab.bpe.gz "
            "(glide-text2im) in a folder "
            "and set generator.model to it."
        )
    base_arch, up_arch = RELEASED_BASE, RELEASED_UPSAMPLER
    if (folder / ARCHITECTURE_FILE).is_file():
        record = json.loads((folder / ARCHITECTURE_FILE).read_text())
        base_arch, up_arch = _architecture(record["base"]), _architecture(record["upsample"])
    tokenizer = GlideTokenizer.from_folder(folder)
    if tokenizer.n_vocab != base_arch.n_vocab:
        raise ModelLoadError(
            f"generator.model: the tokenizer in {folder} has {tokenizer.n_vocab} tokens, the model {base_arch.n_vocab}"
        )
    return GlideModels(_model(folder, "base", base_arch), _model(folder, "upsample", up_arch), tokenizer)


def to_model_range(images: list[Image.Image], size: int) -> torch.Tensor:
    """RGB images, resized to `size`, as an N x 3 x size x size tensor in [-1, 1]."""
    arrays = [
        np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
        for image in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1


def to_images(x: torch.Tensor) -> list[Image.Image]:
    pixels = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(array) for array in pixels]


def guided_output(output: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance over a batch whose first half is conditional and second half
    unconditional: eps = eps_u + s (eps_c - eps_u); the variance channels are the conditional half's."""
    conditional, unconditional = output.chunk(2)
    eps = unconditional[:, :3] + scale * (conditional[:, :3] - unconditional[:, :3])
    return torch.cat([eps, conditional[:, 3:]], dim=1)


class GlideGenerator:
    def __init__(self, models: GlideModels, config: GeneratorConfig):
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.base = models.base.to(self.device, self.dtype)
        self.upsampler = models.upsampler.to(self.device, self.dtype) if config.glide.upsample else None
        if config.compile:
            for model in (self.base, self.upsampler):
                if model is not None:
                    model.compile()
        self.tokenizer = models.tokenizer
        self.config = config
        self.batch_size = config.batch_size
        glide = config.glide
        self.base_diffusion = SpacedDiffusion(self.base.arch.noise_schedule, glide.base_respacing)
        self.up_diffusion = SpacedDiffusion(models.upsampler.arch.noise_schedule, glide.upsample_respacing)
        size = (self.upsampler or self.base).arch.image_size
        if config.resolution != size:
            raise ModelLoadError(
                f"generator.resolution is {config.resolution}, but this GLIDE makes {size} px images: set it to {size}"
            )

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> GlideGenerator:
        return cls(load_glide_models(config.model), config)

    def _noise(self, generators: list[torch.Generator], arch: GlideArchitecture) -> Callable[[], torch.Tensor]:
        shape = (3, arch.image_size, arch.image_size)
        return lambda: torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)

    def _text(self, model: GlideUNet, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, mask = self.tokenizer.batch(prompts, model.arch.text_ctx)
        return tokens.to(self.device), mask.to(self.device)

    def _sample_base(
        self, prompts: list[str], generators: list[torch.Generator], x: torch.Tensor, start: int | None
    ) -> torch.Tensor:
        tokens, mask = self._text(self.base, prompts + [""] * len(prompts))
        scale = self.config.guidance_scale

        def model(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return guided_output(self.base(torch.cat([x, x]), torch.cat([timesteps, timesteps]), tokens, mask), scale)

        return self.base_diffusion.sample(model, x, self._noise(generators, self.base.arch), start)

    def upsample(self, prompts: list[str], generators: list[torch.Generator], low_res: torch.Tensor) -> torch.Tensor:
        """The upsampler on base samples in [-1, 1], quantised to 8 bits as the base's images are."""
        low_res = ((low_res + 1) * 127.5).round() / 127.5 - 1
        tokens, mask = self._text(self.upsampler, prompts)
        noise = self._noise(generators, self.upsampler.arch)
        x = noise() * self.config.glide.upsample_temperature

        def model(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return self.upsampler(x, timesteps, tokens, mask, low_res=low_res)

        if self.config.glide.upsample_sampler == "ddim":  # glide-text2im's: DDIM, eta 0
            return self.up_diffusion.ddim_sample(model, x, noise)
        return self.up_diffusion.sample(model, x, noise)

    @torch.inference_mode()
    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        x = self._noise(generators, self.base.arch)()
        return self._finish(prompts, generators, self._sample_base(prompts, generators, x, None))

    @torch.inference_mode()
    def generate_guided(
        self, prompts: list[str], seeds: list[int], references: list[Image.Image], strength: float
    ) -> list[Image.Image]:
        """Real guidance: each reference noised to step round(strength x steps) of the base's respaced
        schedule (at least 1), then denoised with its prompt. At strength 1 the reference is not used
        at all: that is text-to-image from the same seed."""
        if not 0 < strength <= 1:
            raise ValueError(f"real guidance strength must be in (0, 1], got {strength}")
        steps = self.base_diffusion.num_steps
        start_step = max(1, round(strength * steps))
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        noise = self._noise(generators, self.base.arch)()
        if start_step == steps:
            x = noise
        else:
            x = self.base_diffusion.q_sample(
                to_model_range(references, self.base.arch.image_size).to(self.device), start_step - 1, noise
            )
        return self._finish(prompts, generators, self._sample_base(prompts, generators, x, start_step))

    def _finish(
        self, prompts: list[str], generators: list[torch.Generator], samples: torch.Tensor
    ) -> list[Image.Image]:
        if self.upsampler is not None:
            samples = self.upsample(prompts, generators, samples)
        return to_images(samples)
