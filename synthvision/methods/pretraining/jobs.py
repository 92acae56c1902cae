"""The ResNet jobs: pre-training on synthetic shards (supervised or MoCo v2), training a classifier
from scratch, and transfer. Each checkpoints to `reldir/ckpt/` in the run's storage, resumes from
there; the stages in `synthvision/stages/` commit their reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors

from synthvision.core.batching import batched
from synthvision.core.config import MocoConfig, OptimConfig
from synthvision.core.errors import DataError
from synthvision.core.hashing import derive_seed
from synthvision.core.manifest import Manifest
from synthvision.core.pipelining import cpu_workers
from synthvision.methods.pretraining.checkpoint import Checkpointer
from synthvision.methods.pretraining.data import (
    Batch,
    LabelledImages,
    Transform,
    epoch_batches,
    eval_transform,
    moco_v2_transform,
    synthetic_examples,
    train_transform,
)
from synthvision.methods.pretraining.loop import LoopResult, run_loop
from synthvision.methods.pretraining.models import MoCo, export_backbone, set_batch_norm_frozen
from synthvision.storage.store import Storage

BACKBONE_FILE = "backbone.safetensors"
OnStep = Callable[[int], None] | None  # called after each step (tests kill a job there)


def seed_init(seed: int, *parts: object) -> None:
    """Fix a new model's random init (and MoCo's initial queue) by the run's seed and the job."""
    torch.manual_seed(derive_seed(seed, "init", *parts))


def _steps_per_epoch(examples: int, batch_size: int) -> int:
    if examples == 0:
        raise DataError("no training images")
    return -(-examples // batch_size)


def _to(batch: Batch, device: torch.device) -> Batch:
    views, labels = batch
    return [view.to(device, non_blocking=True) for view in views], labels.to(device, non_blocking=True)


@torch.no_grad()
def model_top1(model: torch.nn.Module, data: LabelledImages, size: int, batch_size: int, device: torch.device) -> float:
    model.eval()
    transform, correct = eval_transform(size), 0
    for batch in batched(zip(data.images, data.labels, strict=True), batch_size):
        images = torch.stack([transform(image) for image, _ in batch]).to(device)
        correct += int((model(images).argmax(1).cpu().numpy() == np.array([label for _, label in batch])).sum())
    return 100.0 * correct / len(data.labels)


def _source(
    storage: Storage, manifests: list[Manifest] | None, real: LabelledImages | None, seed: int
) -> tuple[int, Callable[[int, int], Iterator]]:
    """(examples per epoch, examples(epoch, skip)) from synthetic shards or a real set."""
    if manifests is not None:
        return sum(m.count for m in manifests), lambda epoch, skip: synthetic_examples(
            storage, manifests, seed, epoch, skip
        )
    return len(real.labels), lambda epoch, skip: real.examples(seed, epoch, skip)


def loader_workers(configured: int | None, device: torch.device) -> int:
    """DataLoader worker processes: as configured, else one per core (at most 8) beside a GPU, and none
    beside a CPU model (it needs the cores itself)."""
    if configured is not None:
        return configured
    return cpu_workers(None) if device.type == "cuda" else 0


def _epochs(
    examples: Callable[[int, int], Iterator], size: int, views: list[Transform], workers: int, device: torch.device
) -> Callable[[int, int], Iterator[Batch]]:
    """`epoch_batches(epoch, skip)` for the loop: the epoch's batches without its first `skip`."""
    return lambda epoch, skip: epoch_batches(
        partial(examples, epoch, skip * size), size, views, workers, pin=device.type == "cuda"
    )


def train_supervised(
    storage: Storage,
    reldir: str,
    model: torch.nn.Module,
    optim: OptimConfig,
    image_size: int,
    seed: int,
    checkpoint_every: int,
    device: torch.device,
    manifests: list[Manifest] | None = None,
    real: LabelledImages | None = None,
    batch_norm: str = "train",
    on_step: Callable[[int], None] | None = None,
    config_hash: str = "",
    workers: int = 0,
) -> LoopResult:
    """Cross-entropy training with random resized crops and flips, on synthetic shards or a real set."""
    count, examples = _source(storage, manifests, real, seed)
    views: list[Transform] = [train_transform(image_size)]
    model.to(device)

    def train_mode() -> None:
        model.train()
        if batch_norm == "frozen":
            set_batch_norm_frozen(model)

    def step_loss(batch: Batch) -> torch.Tensor:
        (images,), labels = _to(batch, device)
        return F.cross_entropy(model(images), labels)

    return run_loop(
        model,
        optim,
        _steps_per_epoch(count, optim.batch_size),
        _epochs(examples, optim.batch_size, views, workers, device),
        step_loss,
        Checkpointer(storage, f"{reldir}/ckpt", config_hash),
        checkpoint_every,
        train_mode,
        on_step,
    )


def train_moco(
    storage: Storage,
    reldir: str,
    model: MoCo,
    optim: OptimConfig,
    image_size: int,
    seed: int,
    checkpoint_every: int,
    device: torch.device,
    manifests: list[Manifest],
    on_step: Callable[[int], None] | None = None,
    config_hash: str = "",
    workers: int = 0,
) -> LoopResult:
    """MoCo v2 on synthetic shards: two augmented views of each image, InfoNCE against the queue."""
    count, examples = _source(storage, manifests, None, seed)
    views = [moco_v2_transform(image_size)] * 2
    model.to(device)

    def step_loss(batch: Batch) -> torch.Tensor:
        (view_q, view_k), _ = _to(batch, device)
        return model(view_q, view_k)

    return run_loop(
        model,
        optim,
        _steps_per_epoch(count, optim.batch_size),
        _epochs(examples, optim.batch_size, views, workers, device),
        step_loss,
        Checkpointer(storage, f"{reldir}/ckpt", config_hash),
        checkpoint_every,
        model.train,
        on_step,
    )


def build_moco(arch: str, moco: MocoConfig) -> MoCo:
    return MoCo(arch, moco.dim, moco.queue_size, moco.momentum, moco.temperature, moco.mlp_hidden)


def write_backbone(storage: Storage, reldir: str, model: torch.nn.Module, arch: str, config_hash: str) -> str:
    storage.write_bytes(
        f"{reldir}/{BACKBONE_FILE}",
        export_backbone(model, {"arch": arch, "config_hash": config_hash, "format": "torchvision/timm resnet"}),
    )
    return storage.url_of(f"{reldir}/{BACKBONE_FILE}")


def load_backbone(data: bytes, model: torch.nn.Module, source: str) -> None:
    """A backbone state dict (safetensors bytes) into a fresh ResNet, or into both of MoCo's encoders;
    the classifier or MLP head stays newly initialised."""
    state = load_safetensors(data)
    for target in (model.encoder_q, model.encoder_k) if isinstance(model, MoCo) else (model,):
        missing, unexpected = target.load_state_dict(state, strict=False)
        if unexpected or any(not key.startswith("fc.") for key in missing):
            raise DataError(
                f"{source} does not fit this architecture (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )


def sample_per_class(
    data: LabelledImages, k: int, class_names: tuple[str, ...], seed: int, field: str = "scratch.real_train_set"
) -> LabelledImages:
    from synthvision.methods.fewshot import sample_shots

    return data.subset(sample_shots(data.labels, k, class_names, seed, field=field))
