"""The judge: a small CNN trained only on real Fashion-MNIST train images, which tells what class a
generated image shows. It measures the generator (does an image of "a photo of a sandal" look like
a real sandal?) independently of CLIP, whose zero-shot view the pipeline is meant to improve on.

Generated images are 32 px RGB upsampled from 16 px; the judge sees every image as 28 px grey, and
is trained with a random round trip through 16 px so that softness alone does not fool it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from synthvision.core.batching import batched
from synthvision.core.errors import ModelLoadError
from synthvision.datasets.fashion_mnist import Split

SIZE = 28
WEIGHTS_FILE = "judge.safetensors"
MEAN, STD = 0.286, 0.353  # Fashion-MNIST's train split


def build_judge(num_classes: int = 10) -> nn.Sequential:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        ]

    return nn.Sequential(
        *block(1, 16),
        nn.MaxPool2d(2),
        *block(16, 32),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def to_input(images: list[Image.Image]) -> torch.Tensor:
    """Any images as the judge's input: grey, 28 px (bicubic), normalised, N x 1 x 28 x 28."""
    arrays = [
        np.asarray(image.convert("L").resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
        for image in images
    ]
    return (torch.from_numpy(np.stack(arrays))[:, None] / 255.0 - MEAN) / STD


def _pixels_input(images: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(images).float()[:, None] / 255.0 - MEAN) / STD


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shifts of up to 2 px, and for half the batch a round trip through 16 px (soft images)."""
    shifts = torch.randint(-2, 3, (2,), generator=generator).tolist()
    x = torch.roll(x, shifts=shifts, dims=(2, 3))
    soft = torch.rand(len(x), generator=generator) < 0.5
    if soft.any():
        round_trip = F.interpolate(
            F.interpolate(x[soft], size=16, mode="bilinear", antialias=True, align_corners=False),
            size=SIZE,
            mode="bicubic",
            align_corners=False,
        )
        x = x.clone()
        x[soft] = round_trip
    return x


@dataclass
class JudgeTraining:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def train_judge(train: Split, settings: JudgeTraining, steps: int | None = None) -> tuple[nn.Sequential, list[float]]:
    """Train the judge on `train` (AdamW, one-cycle cosine); returns it in eval mode and its loss per
    epoch. `steps` stops early (tests)."""
    torch.manual_seed(settings.seed)
    model = build_judge()
    x_all, y_all = _pixels_input(train.images), torch.from_numpy(train.labels)
    steps_per_epoch = -(-len(y_all) // settings.batch_size)
    total = steps or settings.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=total)
    generator = torch.Generator().manual_seed(settings.seed)
    losses, step = [], 0
    model.train()
    while step < total:
        epoch_loss, seen = 0.0, 0
        for batch in torch.randperm(len(y_all), generator=generator).split(settings.batch_size):
            loss = F.cross_entropy(model(_augment(x_all[batch], generator)), y_all[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.item() * len(batch)
            seen += len(batch)
            step += 1
            if step == total:
                break
        losses.append(epoch_loss / seen)
    return model.eval(), losses


@torch.no_grad()
def judge_pixels(model: nn.Sequential, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Predicted classes of 28 x 28 grey uint8 images (a real split)."""
    return torch.cat(
        [model(_pixels_input(images[i : i + batch_size])).argmax(1) for i in range(0, len(images), batch_size)]
    ).numpy()


@torch.no_grad()
def judge_images(model: nn.Sequential, images: list[Image.Image], batch_size: int = 500) -> np.ndarray:
    """Predicted classes of any images (generated ones)."""
    return torch.cat([model(to_input(batch)).argmax(1) for batch in batched(images, batch_size)]).numpy()


def save_judge(model: nn.Sequential, folder: Path, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, folder / WEIGHTS_FILE)
    (folder / "judge.json").write_text(json.dumps(record, indent=1))


def load_judge(folder: str | Path) -> nn.Sequential:
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"judge: no {WEIGHTS_FILE} in {folder} (python -m synthvision.toy judge writes it)")
    model = build_judge()
    model.load_state_dict(load_file(path))
    return model.eval()


def timed_training(train: Split, test: Split, settings: JudgeTraining) -> tuple[nn.Sequential, dict]:
    """Train, then measure on the real test split: the figures of the judge's model card."""
    started = time.perf_counter()
    model, losses = train_judge(train, settings)
    seconds = time.perf_counter() - started
    accuracy = float((judge_pixels(model, test.images) == test.labels).mean() * 100)
    return model, {
        "settings": vars(settings),
        "epoch_losses": losses,
        "train_seconds": round(seconds, 1),
        "test_top1": round(accuracy, 2),
        "train_images": len(train.labels),
    }
