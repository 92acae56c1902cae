"""Few-shot learning with synthetic data (paper section 3.2, A.7.2), on frozen CLIP features.

- `sample_shots`: M images per class from a real labelled pool, fixed by the seed.
- `real_filter` (RF): a synthetic image of class c is dropped when the majority of its k nearest
  real shots (cosine similarity of CLIP image features) belong to classes other than c: it looks
  more like another class's real data than like its own.
- Training a linear head initialised from CLIP's text embeddings (CT w. init) on the shots alone, or
  with the synthetic images by **mix** training (every step one real batch of 32 and one synthetic
  batch of 512, their losses added 1:1, lr 1e-3) or **phase-wise** (all epochs on one part, then all
  on the other, lr 2e-3 each). The encoder is frozen (the paper's "BN frozen"), so features are cached.
Pure functions on arrays; the run reads and writes the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from synthvision.config import FewShotConfig
from synthvision.devices import resolve_device
from synthvision.errors import DataError
from synthvision.losses import LOSSES
from synthvision.training import normalize

STRATEGIES = ("real_only", "mix", "syn_then_real", "real_then_syn")


def sample_shots(labels: np.ndarray, shots: int, class_names: tuple[str, ...], seed: int, field: str = "fewshot.train_set") -> np.ndarray:
    """Indices of `shots` images per class (sorted), the same for the same labels and seed, and nested:
    the M-shot set of a seed holds its smaller shot sets, so accuracy vs shots compares like with like."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if len(members) < shots:
            raise DataError(f"{field}: class {name!r} has {len(members)} image(s), fewer than {shots} shots")
        chosen.append(members[rng.permutation(len(members))[:shots]])
    return np.sort(np.concatenate(chosen))


def real_filter(syn_features: np.ndarray, syn_labels: np.ndarray, real_features: np.ndarray, real_labels: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask of the synthetic images: False where more than half of the k nearest real shots
    (cosine similarity) are of another class than the synthetic image's own."""
    k = min(k, len(real_labels))
    similarity = normalize(syn_features) @ normalize(real_features).T
    nearest = similarity.topk(k, dim=1).indices.numpy()
    other = (real_labels[nearest] != syn_labels[:, None]).sum(axis=1)
    return other * 2 <= k


@dataclass
class FewShotResult:
    head: torch.nn.Linear
    steps: list[tuple[int, int]] = field(default_factory=list)  # (real, synthetic) samples per step


@dataclass(frozen=True)
class Part:
    """Training data of one kind: unit-norm features, labels, teacher logits (for SCE), its loss."""

    x: torch.Tensor
    y: torch.Tensor
    teacher: torch.Tensor
    loss: str

    @classmethod
    def of(cls, features: np.ndarray, labels: np.ndarray, teacher: np.ndarray | None, loss: str, device: torch.device) -> Part:
        teacher = np.zeros((len(labels), 1), np.float32) if teacher is None else teacher
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        return cls(normalize(features).to(device), labels, torch.as_tensor(teacher, dtype=torch.float32, device=device), loss)

    def batches(self, size: int, order: torch.Generator) -> Iterator[torch.Tensor]:
        """Index batches over endless reshuffled epochs."""
        while True:
            yield from torch.randperm(len(self.y), generator=order).split(size)

    def loss_on(self, head: torch.nn.Linear, batch: torch.Tensor, temperature: float) -> torch.Tensor:
        return LOSSES[self.loss](head(self.x[batch]), self.y[batch], self.teacher[batch], temperature)


def _epoch_steps(samples: int, batch_size: int) -> int:
    return -(-samples // batch_size)


def train_few_shot(
    strategy: str,
    head: torch.nn.Linear,
    real: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    config: FewShotConfig,
    seed: int,
) -> FewShotResult:
    """Tune `head` by `strategy` on real shots (features, labels) and synthetic data (features,
    labels, CLIP logits); returns it on the CPU with the per-step (real, synthetic) batch sizes."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown few-shot strategy {strategy!r}: use one of {STRATEGIES}")
    device = resolve_device(config.device)
    head = head.to(device).train()
    order = torch.Generator().manual_seed(seed)
    real_part = Part.of(*real, None, "ce", device)
    result = FewShotResult(head)
    real_phase = (real_part, None, config.epochs * _epoch_steps(len(real_part.y), config.real_batch_size))
    if strategy == "real_only" or synthetic is None:
        _run(head, real_phase, config.phase_lr, config, order, result)
    else:
        syn_part = Part.of(*synthetic, config.synthetic_loss, device)
        syn_steps = config.epochs * _epoch_steps(len(syn_part.y), config.synthetic_batch_size)
        if strategy == "mix":  # epochs counted over the synthetic part; the real shots cycle alongside
            _run(head, (real_part, syn_part, syn_steps), config.mix_lr, config, order, result)
        else:
            syn_phase = (None, syn_part, syn_steps)
            for phase in (real_phase, syn_phase) if strategy == "real_then_syn" else (syn_phase, real_phase):
                _run(head, phase, config.phase_lr, config, order, result)
    result.head = head.cpu().eval()
    return result


def _run(head: torch.nn.Linear, phase: tuple[Part | None, Part | None, int], lr: float, config: FewShotConfig, order: torch.Generator, result: FewShotResult) -> None:
    """One phase: `steps` AdamW steps on a cosine schedule, each summing the losses of one real batch
    and one synthetic batch (either part may be absent)."""
    real, synthetic, steps = phase
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    real_batches = real.batches(config.real_batch_size, order) if real else None
    syn_batches = synthetic.batches(config.synthetic_batch_size, order) if synthetic else None
    for _ in range(steps):
        loss, sizes = 0.0, [0, 0]
        for i, (part, batches) in enumerate(((real, real_batches), (synthetic, syn_batches))):
            if part is not None:
                batch = next(batches)
                loss = loss + part.loss_on(head, batch, config.temperature)
                sizes[i] = len(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        result.steps.append((sizes[0], sizes[1]))

