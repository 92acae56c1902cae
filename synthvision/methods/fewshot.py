"""Few-shot learning with synthetic data (paper section 3.2, A.7.2), on frozen CLIP features.

- `sample_shots`: M images per class from a real labelled pool, fixed by the seed.
- `real_filter` (RF): a synthetic image of class c is dropped when the majority of its k nearest
  real shots (cosine similarity of CLIP image features) belong to classes other than c: it looks
  more like another class's real data than like its own.
- Training a linear head initialised from CLIP's text embeddings (CT w. init) on the shots alone, or
  with the synthetic images by **mix** training (every step one real batch of 32 and one synthetic
  batch of 512, their losses added 1:1, lr 1e-3) or **phase-wise** (all epochs on one part, then all
  on the other, lr 2e-3 each). By default the encoder is frozen with BatchNorm in eval mode (the
  paper's "BN frozen"), so features are cached; `batch_norm: train` (Table 6) or a tuned encoder run
  the image tower at every step instead (`Encoder`).
Pure functions on arrays; the run reads and writes the data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from synthvision.core.batching import batched
from synthvision.core.errors import DataError
from synthvision.core.learning_config import FewShotConfig
from synthvision.methods.classifier_tuning import normalize
from synthvision.methods.losses import Loss

CE = Loss("ce")  # plain cross-entropy: the default loss of a part

STRATEGIES = ("real_only", "syn_only", "mix", "syn_then_real", "real_then_syn")


def sample_shots(
    labels: np.ndarray, shots: int, class_names: tuple[str, ...], seed: int, field: str = "fewshot.train_set"
) -> np.ndarray:
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


def real_filter(
    syn_features: np.ndarray, syn_labels: np.ndarray, real_features: np.ndarray, real_labels: np.ndarray, k: int
) -> np.ndarray:
    """Keep-mask of the synthetic images: False where more than half of the k nearest real shots
    (cosine similarity) are of another class than the synthetic image's own."""
    k = min(k, len(real_labels))
    similarity = normalize(syn_features) @ normalize(real_features).T
    nearest = similarity.topk(k, dim=1).indices.numpy()
    other = (real_labels[nearest] != syn_labels[:, None]).sum(axis=1)
    return other * 2 <= k


# The paper's released code, run with its README's flags (`--freeze-encoder`), trains mix on cached
# features whose loaders take its `--batch-size` (128) for both parts, while its cosine schedule counts
# steps of the image loader's `--batch-size-syn` (512); `mix_schedule: paper_code` runs that.
PAPER_CODE_BATCH = 128
PAPER_CODE_COUNTED_BATCH = 512


@dataclass
class FewShotResult:
    head: torch.nn.Linear
    steps: list[tuple[int, int]] = field(default_factory=list)  # (real, synthetic) samples per step
    lrs: list[float] = field(default_factory=list)  # the head's learning rate at each step


class Encoder:
    """CLIP's image tower run at every step, for the settings that cannot use cached features:
    BatchNorm in train mode (batch statistics, running statistics updated; paper Table 6) and/or
    the tower's weights tuned. Holds its own copy of the tower."""

    def __init__(
        self,
        tower: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        device: torch.device,
        batch_norm: str,
        tune: bool,
    ):
        self.tower = copy.deepcopy(tower).to(device).float()
        self.preprocess, self.device, self.batch_norm, self.tune = preprocess, device, batch_norm, tune
        for parameter in self.tower.parameters():
            parameter.requires_grad = tune

    def train_mode(self) -> None:
        self.tower.train()
        if self.batch_norm == "frozen":
            for module in self.tower.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def features(self, images: list[Image.Image]) -> torch.Tensor:
        return F.normalize(
            self.tower(torch.stack([self.preprocess(image) for image in images]).to(self.device)).float(), dim=-1
        )

    @torch.no_grad()
    def encode(self, images: list[Image.Image], batch_size: int) -> torch.Tensor:
        """Unit-norm features in eval mode (after training: with the running statistics it learnt)."""
        self.tower.eval()
        return torch.cat([self.features(batch) for batch in batched(images, batch_size)]).cpu()


@dataclass(frozen=True)
class Part:
    """Training data of one kind: features of an index batch (cached, or encoded now), labels,
    teacher logits (for SCE) and its loss."""

    features: Callable[[torch.Tensor], torch.Tensor]
    y: torch.Tensor
    teacher: torch.Tensor
    loss: Loss

    @classmethod
    def cached(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        teacher: np.ndarray | None = None,
        loss: Loss = CE,
        device: torch.device | str = "cpu",
    ) -> Part:
        x = normalize(features).to(device)
        return cls(lambda batch: x[batch], *cls._targets(labels, teacher, device), loss)

    @classmethod
    def images(
        cls,
        images: list[Image.Image],
        labels: np.ndarray,
        encoder: Encoder,
        teacher: np.ndarray | None = None,
        loss: Loss = CE,
    ) -> Part:
        return cls(
            lambda batch: encoder.features([images[i] for i in batch.tolist()]),
            *cls._targets(labels, teacher, encoder.device),
            loss,
        )

    @staticmethod
    def _targets(labels: np.ndarray, teacher: np.ndarray | None, device) -> tuple[torch.Tensor, torch.Tensor]:
        teacher = np.zeros((len(labels), 1), np.float32) if teacher is None else teacher
        return torch.as_tensor(labels, dtype=torch.long, device=device), torch.as_tensor(
            teacher, dtype=torch.float32, device=device
        )

    def batches(self, size: int, order: torch.Generator) -> Iterator[torch.Tensor]:
        """Index batches over endless reshuffled epochs."""
        while True:
            yield from torch.randperm(len(self.y), generator=order).split(size)

    def loss_on(self, head: torch.nn.Linear, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.y.device)
        return self.loss(head(self.features(batch)), self.y[batch], self.teacher[batch])


def _epoch_steps(samples: int, batch_size: int) -> int:
    return -(-samples // batch_size)


def train_few_shot(
    strategy: str,
    head: torch.nn.Linear,
    real: Part,
    synthetic: Part | None,
    config: FewShotConfig,
    seed: int,
    encoder: Encoder | None = None,
) -> FewShotResult:
    """Tune `head` (and the encoder's tower, if it is tuned) by `strategy` on the real shots and the
    synthetic data; returns the head on the CPU with the per-step (real, synthetic) batch sizes."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown few-shot strategy {strategy!r}: use one of {STRATEGIES}")
    head = head.to(real.y.device).train()
    order = torch.Generator().manual_seed(seed)
    result = FewShotResult(head)
    real_phase = (real, None, config.epochs * _epoch_steps(len(real.y), config.real_batch_size))
    if strategy == "real_only" or synthetic is None:
        if strategy == "syn_only":
            raise DataError("few-shot strategy syn_only: no synthetic image is left to train on")
        _run(head, real_phase, config.phase_lr, config, order, result, encoder)
    else:
        syn_steps = config.epochs * _epoch_steps(len(synthetic.y), config.synthetic_batch_size)
        if strategy == "syn_only":
            _run(head, (None, synthetic, syn_steps), config.phase_lr, config, order, result, encoder)
        elif strategy == "mix" and config.mix_schedule == "paper_code":
            _run_paper_code_mix(head, real, synthetic, config, order, result, encoder)
        elif strategy == "mix":  # epochs counted over the synthetic part; the real shots cycle alongside
            _run(head, (real, synthetic, syn_steps), config.mix_lr, config, order, result, encoder)
        else:
            syn_phase = (None, synthetic, syn_steps)
            for phase in (real_phase, syn_phase) if strategy == "real_then_syn" else (syn_phase, real_phase):
                _run(head, phase, config.phase_lr, config, order, result, encoder)
    result.head = head.cpu().eval()
    return result


def _run(
    head: torch.nn.Linear,
    phase: tuple[Part | None, Part | None, int],
    lr: float,
    config: FewShotConfig,
    order: torch.Generator,
    result: FewShotResult,
    encoder: Encoder | None,
) -> None:
    """One phase: `steps` AdamW steps on a cosine schedule, each summing the losses of one real batch
    and one synthetic batch (either part may be absent)."""
    real, synthetic, steps = phase
    optimizer = _optimizer(head, lr, config, encoder)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    real_batches = real.batches(config.real_batch_size, order) if real else None
    syn_batches = synthetic.batches(config.synthetic_batch_size, order) if synthetic else None
    for _ in range(steps):
        real_batch = (real, next(real_batches)) if real else None
        syn_batch = (synthetic, next(syn_batches)) if synthetic else None
        _step(head, optimizer, real_batch, syn_batch, result, encoder)
        schedule.step()


def _run_paper_code_mix(
    head: torch.nn.Linear,
    real: Part,
    synthetic: Part,
    config: FewShotConfig,
    order: torch.Generator,
    result: FewShotResult,
    encoder: Encoder | None,
) -> None:
    """Mix as the paper's released code runs it (`PAPER_CODE_BATCH`): each epoch, one pass over the
    synthetic features in batches of 128, each step with the next batch of 128 real ones (reshuffled
    from the start at every epoch, cycling when they run out); the learning rate at epoch e, step i is
    the cosine of step `i + e * n` over `epochs * n` steps, n = ceil(synthetic / 512), so it runs past
    the cosine's end within each epoch and rises again; gradients clipped at norm 1."""
    counted = _epoch_steps(len(synthetic.y), PAPER_CODE_COUNTED_BATCH)
    optimizer = _optimizer(head, config.mix_lr, config, encoder)
    for epoch in range(config.epochs):
        real_batches = real.batches(PAPER_CODE_BATCH, order)
        for i, syn_batch in enumerate(torch.randperm(len(synthetic.y), generator=order).split(PAPER_CODE_BATCH)):
            scale = 0.5 * (1 + math.cos(math.pi * (i + epoch * counted) / (config.epochs * counted)))
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * scale
            _step(head, optimizer, (real, next(real_batches)), (synthetic, syn_batch), result, encoder, clip=1.0)


def _optimizer(head: torch.nn.Linear, lr: float, config: FewShotConfig, encoder: Encoder | None) -> torch.optim.AdamW:
    """AdamW over the head (at `lr`) and, when the encoder is tuned, its tower (at `encoder_lr`)."""
    groups = [{"params": list(head.parameters()), "lr": lr, "initial_lr": lr}]
    if encoder is not None and encoder.tune:
        groups.append(
            {"params": list(encoder.tower.parameters()), "lr": config.encoder_lr, "initial_lr": config.encoder_lr}
        )
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _step(
    head: torch.nn.Linear,
    optimizer: torch.optim.Optimizer,
    real: tuple[Part, torch.Tensor] | None,
    synthetic: tuple[Part, torch.Tensor] | None,
    result: FewShotResult,
    encoder: Encoder | None,
    clip: float | None = None,
) -> None:
    """One optimiser step on the real batch's loss plus the synthetic batch's (either may be absent);
    records the batch sizes and the head's learning rate."""
    if encoder is not None:
        encoder.train_mode()
    loss = sum(part.loss_on(head, batch) for part, batch in (pair for pair in (real, synthetic) if pair is not None))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    result.lrs.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    result.steps.append((0 if real is None else len(real[1]), 0 if synthetic is None else len(synthetic[1])))


@torch.no_grad()
def class_weakness(head: torch.nn.Linear, features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class, 1 - the head's mean probability of the class on its images (`features`, e.g. the
    real shots): how far the head is from knowing the class. A smooth error, so that one or two shots
    per class still rank classes (a 0/1 error of one shot ties most of them); 1 for a class with no
    image."""
    probabilities = torch.softmax(head(normalize(features).to(head.weight.device)), dim=-1).cpu().numpy()
    weakness = np.ones(num_classes)
    for c in range(num_classes):
        mine = np.asarray(labels) == c
        if mine.any():
            weakness[c] = 1.0 - float(probabilities[mine, c].mean())
    return weakness


def part_losses(config: FewShotConfig) -> tuple[Loss, Loss]:
    """The real shots' loss (CE) and the synthetic part's (`synthetic_loss`), with the config's label
    smoothing (every CE term) and hard pseudo-labels (the synthetic soft term)."""
    real = Loss("ce", label_smoothing=config.label_smoothing)
    synthetic = Loss(config.synthetic_loss, config.temperature, config.label_smoothing, config.hard_pseudo_labels)
    return real, synthetic
