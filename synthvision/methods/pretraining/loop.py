"""One resumable training loop for every ResNet job.

The learning rate is a pure function of the step, the data order a pure function of (seed, epoch),
and each image's augmentation a function of its own seed, so a job that restarts from a checkpoint
at step s continues exactly as if it had never stopped, and ends at the same step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from synthvision.core import failpoints
from synthvision.core.learning_config import OptimConfig
from synthvision.methods.pretraining.checkpoint import Checkpointer
from synthvision.methods.pretraining.data import Batch


def lr_at(optim: OptimConfig, step: int, steps_per_epoch: int) -> float:
    if optim.schedule == "cosine":
        return optim.lr * 0.5 * (1 + math.cos(math.pi * step / (optim.epochs * steps_per_epoch)))
    epoch = step // steps_per_epoch
    return optim.lr * optim.lr_gamma ** sum(epoch >= milestone for milestone in optim.lr_milestones)


def make_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(parameters, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)


@dataclass
class LoopResult:
    steps: int
    resumed_from: int | None
    epoch_losses: list[float] = field(default_factory=list)


def run_loop(
    model: torch.nn.Module,
    optim: OptimConfig,
    steps_per_epoch: int,
    epoch_batches: Callable[[int, int], Iterator[Batch]],
    step_loss: Callable[[Batch], torch.Tensor],
    checkpointer: Checkpointer,
    checkpoint_every: int,
    train_mode: Callable[[], None],
    on_step: Callable[[int], None] | None = None,
) -> LoopResult:
    """Train `model` for `optim.epochs` epochs of `steps_per_epoch` steps from its latest checkpoint.

    `epoch_batches(epoch, skip)` yields an epoch's batches without its first `skip` ones;
    `step_loss(batch)` returns the loss to minimise; `train_mode()` sets train/eval modes;
    `on_step(step)` runs after each step (progress, tests)."""
    optimizer = make_optimizer(model, optim)
    counters: dict[str, Any] = checkpointer.restore(model, optimizer) or {
        "step": 0,
        "epoch_losses": [],
        "loss_sum": 0.0,
    }
    resumed_from = counters["step"] or None
    total = optim.epochs * steps_per_epoch
    step = counters["step"]
    while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        for batch in epoch_batches(epoch, skip):
            train_mode()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(optim, step, steps_per_epoch)
            loss = step_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            counters["loss_sum"] += loss.item()
            if step % steps_per_epoch == 0:
                counters["epoch_losses"].append(counters["loss_sum"] / steps_per_epoch)
                counters["loss_sum"] = 0.0
            counters["step"] = step
            failpoints.reach("pretrain.step")
            if step % checkpoint_every == 0 or step == total:
                checkpointer.save(step, model, optimizer, counters)
            if on_step is not None:
                on_step(step)
            if step % steps_per_epoch == 0:
                break
        else:
            if step % steps_per_epoch:
                raise RuntimeError(
                    f"epoch {epoch} ended after {step % steps_per_epoch} of {steps_per_epoch} steps: the data "
                    "changed under the job"
                )
    return LoopResult(step, resumed_from, counters["epoch_losses"])
