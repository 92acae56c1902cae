"""Training the toy CLIP: an open_clip model (config as data, open_clip's own BPE tokenizer) trained
contrastively on Fashion-MNIST's train split with loosely worded captions (`captions.CLIP_NAMING`).

The recipe makes it behave like CLIP on the paper's harder datasets: its image tower learns the
classes (a linear probe on its frozen features is strong), while its zero-shot head, built from the
label-space names, is biased by how its captions named things, so zero-shot top-1 is well below the
probe. The model is saved in open_clip's `local-dir:` layout and loads through `clip.model:
local-dir:FOLDER`, the path any open_clip checkpoint on disk takes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from synthvision.datasets.fashion_mnist import Split
from synthvision.toy.captions import clip_caption

TOY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "head_width": 32, "patch_size": 4},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
# Fashion-MNIST's grey statistics, repeated per channel (images are grey; the tower takes RGB).
TOY_PREPROCESS = {
    "mean": [0.286, 0.286, 0.286],
    "std": [0.353, 0.353, 0.353],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


@dataclass
class ClipTraining:
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    seed: int = 0
    bf16: bool = True
    log_every: int = 25


@dataclass
class ClipLog:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def preprocess_transform():
    """open_clip's evaluation transform for the toy config: what `ClipModel` applies to every image."""
    return open_clip.image_transform(
        TOY_CLIP_CONFIG["vision_cfg"]["image_size"],
        is_train=False,
        mean=tuple(TOY_PREPROCESS["mean"]),
        std=tuple(TOY_PREPROCESS["std"]),
        resize_mode=TOY_PREPROCESS["resize_mode"],
        interpolation=TOY_PREPROCESS["interpolation"],
    )


def preprocessed(images: np.ndarray) -> torch.Tensor:
    """Grey 28 px images through the evaluation transform, N x 3 x 32 x 32 (float16 to save memory)."""
    transform = preprocess_transform()
    return torch.stack([transform(Image.fromarray(image)).to(torch.float16) for image in images])


class CaptionTokens:
    """open_clip token ids per caption, tokenised once (the caption forms are few)."""

    def __init__(self, context_length: int):
        self.tokenizer = open_clip.SimpleTokenizer(context_length=context_length)
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = sorted(set(captions) - set(self._cache))
        if missing:
            for caption, tokens in zip(missing, self.tokenizer(missing), strict=True):
                self._cache[caption] = tokens
        return torch.stack([self._cache[caption] for caption in captions])


def train_clip(
    split: Split,
    settings: ClipTraining,
    max_steps: int | None = None,
    on_log: Callable[[int, float], None] | None = None,
) -> tuple[open_clip.CLIP, ClipLog]:
    """Contrastive training (symmetric InfoNCE, learnt temperature) from random init; AdamW with
    warmup and a cosine schedule. `max_steps` stops early (tests)."""
    torch.manual_seed(settings.seed)
    model = open_clip.CLIP(**TOY_CLIP_CONFIG)
    pixels = preprocessed(split.images)
    tokens_of = CaptionTokens(TOY_CLIP_CONFIG["text_cfg"]["context_length"])
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
    )
    steps_per_epoch = len(split.labels) // settings.batch_size
    total = settings.epochs * steps_per_epoch if max_steps is None else max_steps
    generator = torch.Generator().manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    log, window, step = ClipLog(), [], 0
    started = time.perf_counter()
    model.train()
    while step < total:
        for batch in torch.randperm(len(split.labels), generator=generator).split(settings.batch_size):
            if len(batch) < settings.batch_size or step == total:
                break
            lr = settings.lr * min(1.0, (step + 1) / settings.warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
            for group in optimizer.param_groups:
                group["lr"] = lr
            tokens = tokens_of([clip_caption(int(split.labels[i]), rng) for i in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
                image_features, text_features, logit_scale = model(pixels[batch].float(), tokens)
            logits = logit_scale.float() * image_features.float() @ text_features.float().T
            target = torch.arange(len(batch))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            window.append(loss.item())
            step += 1
            if step % settings.log_every == 0 or step == total:
                log.steps.append(step)
                log.losses.append(round(float(np.mean(window)), 5))
                window = []
                if on_log:
                    on_log(step, log.losses[-1])
    log.seconds = round(time.perf_counter() - started, 1)
    return model.eval(), log


@torch.no_grad()
def image_features(model: open_clip.CLIP, pixels: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Unit-norm image embeddings of preprocessed images."""
    return torch.cat(
        [
            F.normalize(model.encode_image(pixels[i : i + batch_size].float()), dim=-1)
            for i in range(0, len(pixels), batch_size)
        ]
    )


def linear_probe(
    train_x: torch.Tensor,
    train_y: np.ndarray,
    test_x: torch.Tensor,
    test_y: np.ndarray,
    steps: int = 300,
    seed: int = 0,
) -> float:
    """Top-1 (%) of a logistic-regression probe (full-batch L-BFGS, a little L2) on frozen features."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1)
    y = torch.from_numpy(train_y)
    optimizer = torch.optim.LBFGS(
        head.parameters(), lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(train_x * 10), y) + 1e-4 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float((head(test_x * 10).argmax(1).numpy() == test_y).mean() * 100)
