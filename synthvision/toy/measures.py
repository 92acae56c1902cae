"""What the toy world's model cards and `benchmarks/paper_effects.py` measure, through the same code
paths a run uses: CLIP loaded by `ClipModel` (`local-dir:`), GLIDE by `GlideGenerator` (a weights
folder), images judged by the judge trained on real train images only."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from synthvision.core.batching import batched
from synthvision.core.data_config import ClipConfig, GeneratorConfig, GlideConfig
from synthvision.datasets.fashion_mnist import CLASSES, Split
from synthvision.methods.classifier_tuning import top1
from synthvision.methods.filtering import ZeroShotHead
from synthvision.models.clip import ClipModel
from synthvision.models.generators.glide.backend import GlideGenerator
from synthvision.toy.judge import judge_images


def encode_split(clip: ClipModel, split: Split, batch_size: int = 500) -> np.ndarray:
    """Raw CLIP image embeddings of a split's images, through the model's own preprocessing."""
    images = [Image.fromarray(pixels).convert("RGB") for pixels in split.images]
    return np.concatenate([clip.encode_images(batch) for batch in batched(images, batch_size)])


def zero_shot_top1(clip: ClipModel, features: np.ndarray, labels: np.ndarray, templates: list[str]) -> float:
    """Top-1 (%) of CLIP's zero-shot head (the template ensemble over the label-space names)."""
    head = ZeroShotHead(clip.text_classifier(CLASSES, templates), clip.logit_scale)
    return top1(head.logits(features).argmax(axis=1), labels)


def load_toy_clip(folder: str) -> ClipModel:
    return ClipModel.load(ClipConfig(model=f"local-dir:{folder}", device="cpu"))


def glide_samples(
    folder: str, prompts: list[str], seeds: list[int], guidance: float, base_respacing: str = "50", batch_size: int = 50
) -> list[Image.Image]:
    """Images from the toy GLIDE folder as a run samples them (base with guidance, then `fast27`)."""
    config = GeneratorConfig(
        backend="glide",
        model=folder,
        guidance_scale=guidance,
        resolution=32,
        device="cpu",
        dtype="float32",
        batch_size=batch_size,
        glide=GlideConfig(base_respacing=base_respacing),
    )
    generator = GlideGenerator.from_config(config)
    images: list[Image.Image] = []
    for batch in batched(zip(prompts, seeds, strict=True), batch_size):
        images += generator.generate([prompt for prompt, _ in batch], [seed for _, seed in batch])
    return images


def fidelity(judge: torch.nn.Module, images: list[Image.Image], labels: list[int]) -> float:
    """Share (%) of images the judge labels as their prompt's class."""
    return top1(judge_images(judge, images), np.asarray(labels))


def class_prompts(per_class: int, template: str = "a photo of a {}") -> tuple[list[str], list[int], list[int]]:
    """`per_class` prompts per class with one seed each: (prompts, labels, seeds)."""
    labels = [label for label in range(len(CLASSES)) for _ in range(per_class)]
    return [template.format(CLASSES[label]) for label in labels], labels, list(range(len(labels)))
