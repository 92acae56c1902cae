"""The CLIP model: loading (open_clip name + pretrained tag, `local-dir:` checkpoint, or the tiny
config-built model), the zero-shot text classifier, and the frozen image encoder.

`ClipModel.encode_images` is the only place images go through the image encoder. Scoring stores its
output per shard, and training and evaluation reuse those embeddings, so no image is encoded twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file

from synthvision.core.batching import batched
from synthvision.core.data_config import ClipConfig
from synthvision.core.errors import ConfigError, ModelLoadError
from synthvision.core.memo import once_per_config
from synthvision.core.paths import LOCAL_DIR
from synthvision.models.devices import resolve_device, resolve_dtype
from synthvision.models.pixels import Pixels

TINY_CLIP = "synthvision-tiny-clip"  # a small ViT
TINY_CLIPS = {"tiny": TINY_CLIP, "tiny-rn": "synthvision-tiny-clip-rn"}  # tiny-rn: a small ResNet with BatchNorm
LOAD_TEST = "loadtest"  # no model: see loadtest_clip; "loadtest:SIZE" preprocesses to SIZE px
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

_registered = False


def _register_tiny_config() -> None:
    global _registered
    if not _registered:
        open_clip.add_model_config(Path(str(resources.files("synthvision.data.clip"))))
        _registered = True


def load_test_size(model: str) -> int:
    """The preprocessing size of `loadtest` (RN50's 224) or `loadtest:SIZE` (small, for dry runs at scale)."""
    size = model.partition(":")[2] or "224"
    if not size.isdigit() or int(size) < 1:
        raise ConfigError(f"clip.model: {model!r} must be 'loadtest' or 'loadtest:SIZE' with SIZE a positive integer")
    return int(size)


def open_clip_name(config: ClipConfig) -> str:
    """Validate `clip.model` and return the name open_clip knows it by."""
    if config.model == LOAD_TEST or config.model.startswith(f"{LOAD_TEST}:"):
        load_test_size(config.model)
        return config.model
    if config.model in TINY_CLIPS:
        _register_tiny_config()
        return TINY_CLIPS[config.model]
    if config.model.startswith(LOCAL_DIR):
        folder = Path(config.model[len(LOCAL_DIR) :]).expanduser()
        if not (folder / CONFIG_FILE).is_file():
            raise ModelLoadError(f"clip.model: {folder} is not an open_clip checkpoint folder (no {CONFIG_FILE})")
        return f"{LOCAL_DIR}{folder}"
    if config.model not in open_clip.list_models():
        raise ConfigError(f"clip.model: unknown open_clip model {config.model!r} (see open_clip.list_models())")
    return config.model


@dataclass
class ClipModel:
    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    device: torch.device
    name: str
    autocast_dtype: torch.dtype | None = None  # None: float32
    pixels: Pixels = field(init=False)  # `preprocess` split: uint8 per image on the CPU, floats per batch

    def __post_init__(self) -> None:
        self.pixels = Pixels.split(self.preprocess)

    @classmethod
    def load(cls, config: ClipConfig) -> ClipModel:
        name = open_clip_name(config)
        device = resolve_device(config.device)
        pretrained = config.pretrained if name == config.model else None
        if name in TINY_CLIPS.values():
            torch.manual_seed(0)  # the tiny model's random weights are part of its definition
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device, force_quick_gelu=config.uses_quick_gelu
            )
        except RuntimeError as error:
            raise ModelLoadError(f"clip: could not load {config.model!r} pretrained={pretrained!r}: {error}") from None
        except OSError as error:
            raise ModelLoadError(
                f"clip: could not load {config.model!r} pretrained={pretrained!r} ({str(error).splitlines()[0]}). "
                "Offline, save the checkpoint to a folder and set clip.model to 'local-dir:FOLDER'."
            ) from None
        model.eval()
        if config.compile:
            model.visual.compile()  # the image tower: it runs per image; the text tower once per run
        autocast = _autocast_dtype(config.dtype, device)
        return cls(model, preprocess, open_clip.get_tokenizer(name), device, config.model, autocast)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    def _autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings (N x D), float32, on the model's device."""
        chunks = []
        for batch in batched(texts, 256):
            with self._autocast():
                chunks.append(self.model.encode_text(self.tokenizer(batch).to(self.device)).float())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)

    @torch.inference_mode()
    def text_classifier(self, class_names: tuple[str, ...], templates: list[str]) -> np.ndarray:
        """Unit-norm class embeddings (C x D): per class, the mean of its normalised template embeddings."""
        embeddings = self.encode_texts([template.format(name) for name in class_names for template in templates])
        per_class = embeddings.reshape(len(class_names), len(templates), -1).mean(dim=1)
        return torch.nn.functional.normalize(per_class, dim=-1).cpu().numpy()

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Raw (unnormalised) image embeddings, float32, N x D."""
        return self.encode_pixels(self.pixels.batch(images))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embeddings of a batch of `pixels.image`'s uint8 pixels (N x H x W x 3, on the CPU: so workers
        can prepare them while the model runs), copied as uint8 (pinned, asynchronously, to a GPU) and
        made the model's floats there."""
        if self.device.type == "cuda":
            pixels = (pixels if pixels.is_pinned() else pixels.pin_memory()).to(self.device, non_blocking=True)
        with self._autocast():
            features = self.model.encode_image(self.pixels.floats(pixels.to(self.device)))
        return features.float().cpu().numpy()


def _autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The dtype CLIP runs in under autocast: `auto` is float16 on CUDA and float32 (no autocast) on CPU."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else None
    return None if name == "float32" else resolve_dtype(name, device)


@once_per_config
def load_clip(config: ClipConfig) -> ClipModel:
    """The CLIP model for `config`, loaded once per process and shared by the scoring tasks."""
    if config.model.split(":")[0] == LOAD_TEST:
        from synthvision.models.loadtest_clip import LoadTestClip

        return LoadTestClip(config.seconds_per_batch, load_test_size(config.model))
    return ClipModel.load(config)


def save_clip(
    model: torch.nn.Module,
    model_cfg: dict,
    folder: str | Path,
    preprocess_cfg: dict | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write `model` in open_clip's `local-dir:` layout (config JSON, with its preprocessing if given,
    + safetensors weights, cast to `dtype` if given: open_clip loads them into its float32 model)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"model_cfg": model_cfg, **({"preprocess_cfg": preprocess_cfg} if preprocess_cfg else {})}
    (folder / CONFIG_FILE).write_text(json.dumps(record, indent=1))
    state = {
        key: value.detach().cpu().to(dtype or value.dtype).contiguous() for key, value in model.state_dict().items()
    }
    save_file(state, folder / WEIGHTS_FILE)


def tiny_clip_config() -> dict:
    _register_tiny_config()
    return open_clip.get_model_config(TINY_CLIP)
