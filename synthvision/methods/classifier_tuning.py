"""Classifier tuning (CT): a linear head on the frozen CLIP image encoder, trained on cached features.

The head starts as CLIP's zero-shot classifier: weight = logit_scale * class text embeddings, bias 0,
applied to unit-norm image features, so before the first step it reproduces zero-shot logits exactly.
The encoder is frozen, so its features come from the scoring stage's cache instead of re-encoding.
AdamW with a cosine schedule over all steps; the paper's defaults (A.7.1) are the config's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from synthvision.core.learning_config import TrainingConfig
from synthvision.methods.losses import Loss
from synthvision.models.devices import resolve_device


def zero_shot_head(class_embeddings: np.ndarray, logit_scale: float) -> torch.nn.Linear:
    num_classes, dim = class_embeddings.shape
    head = torch.nn.Linear(dim, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(class_embeddings, dtype=torch.float32) * logit_scale)
        head.bias.zero_()
    return head


def normalize(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    return F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=-1)


@dataclass
class TuningResult:
    head: torch.nn.Linear
    epoch_losses: list[float] = field(default_factory=list)
    epoch_top1: list[float] = field(default_factory=list)  # on the evaluation set, when one is given
    steps: int = 0


def tune_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    teacher_logits: np.ndarray,
    head: torch.nn.Linear,
    config: TrainingConfig,
    seed: int,
    evaluate: Callable[[torch.nn.Linear], float] | None = None,
) -> TuningResult:
    """Train `head` on (features, labels) with `config.loss`; returns it on the CPU with the loss curve
    (and `evaluate(head)` after each epoch, when given: the paper's code keeps the best of those)."""
    device = resolve_device(config.device)
    x = normalize(features).to(device)
    y = torch.as_tensor(labels, dtype=torch.long, device=device)
    teacher = torch.as_tensor(teacher_logits, dtype=torch.float32, device=device)
    head = head.to(device).train()
    loss_fn = Loss(config.loss, config.temperature, config.label_smoothing, config.hard_pseudo_labels)
    steps_per_epoch = -(-len(y) // config.batch_size)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    order = torch.Generator().manual_seed(seed)
    result = TuningResult(head)
    for _ in range(config.epochs):
        total = 0.0
        for batch in torch.randperm(len(y), generator=order).to(device).split(config.batch_size):
            loss = loss_fn(head(x[batch]), y[batch], teacher[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
            result.steps += 1
        result.epoch_losses.append(total / len(y))
        if evaluate is not None:
            result.epoch_top1.append(evaluate(head))
    result.head = head.cpu().eval()
    return result


@torch.no_grad()
def predict(head: torch.nn.Linear, features: np.ndarray) -> np.ndarray:
    return head(normalize(features).to(head.weight.device)).argmax(dim=-1).cpu().numpy()


def top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    if len(labels) == 0:
        return float("nan")
    return float((np.asarray(predictions) == np.asarray(labels)).mean() * 100.0)


def per_class_top1(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    """Top-1 accuracy in percent of each class's images (None for a class with none): where a mean
    over classes hides the class that data allocation should help."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    members = [labels == c for c in range(num_classes)]
    return [top1(predictions[mine], labels[mine]) if mine.any() else None for mine in members]


def worst_class(per_class: Iterable[float | None]) -> float | None:
    """The lowest of `per_class_top1`'s values (None where no class had an image)."""
    return min((value for value in per_class if value is not None), default=None)
