"""The ResNet jobs: pre-training on synthetic shards (supervised or MoCo v2), training a classifier
from scratch, and transfer. Each checkpoints to `reldir/ckpt/` in the run's storage, resumes from
there; the stages in `synthvision/stages/` commit their reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors

from synthvision.core.batching import batched
from synthvision.core.errors import DataError
from synthvision.core.hashing import derive_seed
from synthvision.core.learning_config import MocoConfig, OptimConfig
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
    to_model,
    train_transform,
)
from synthvision.methods.pretraining.loop import LoopResult, run_loop
from synthvision.methods.pretraining.models import MoCo, export_backbone, set_batch_norm_frozen
from synthvision.models.devices import resolve_device
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
    return [to_model(view, device) for view in views], labels.to(device, non_blocking=True)


@torch.no_grad()
def model_top1(job: Job, model: torch.nn.Module, data: LabelledImages) -> float:
    """Top-1 (%) of `model` on `data`, evaluated as `job` trains: its image size, batch size and device."""
    model.eval()
    transform, correct = eval_transform(job.image_size), 0
    for batch in batched(zip(data.images, data.labels, strict=True), job.optim.batch_size):
        images = to_model(torch.stack([transform(image) for image, _ in batch]), job.device)
        correct += int((model(images).argmax(1).cpu().numpy() == np.array([label for _, label in batch])).sum())
    return 100.0 * correct / len(data.labels)


def _source(
    job: Job, manifests: list[Manifest] | None, real: LabelledImages | None
) -> tuple[int, Callable[[int, int], Iterator]]:
    """(examples per epoch, examples(epoch, skip)) from synthetic shards or a real set."""
    if manifests is not None:
        return sum(m.count for m in manifests), lambda epoch, skip: synthetic_examples(
            job.storage, manifests, job.seed, epoch, skip
        )
    return len(real.labels), lambda epoch, skip: real.examples(job.seed, epoch, skip)


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


class JobSettings(Protocol):
    """What pretrain, transfer and scratch each configure for their training jobs."""

    optim: OptimConfig
    image_size: int
    checkpoint_every: int
    device: str
    workers: int | None


@dataclass(frozen=True)
class Job:
    """One ResNet training job: where it checkpoints (`reldir` of `storage`, under `config_hash`), how
    it trains (`optim`, `image_size`, `seed`), where (`device`, `workers` loader processes), and who is
    told of each step. The three ResNet stages describe their jobs with it (`Job.of`)."""

    storage: Storage
    reldir: str
    optim: OptimConfig
    image_size: int
    seed: int
    checkpoint_every: int
    device: torch.device
    config_hash: str = ""
    workers: int = 0
    on_step: OnStep = None

    @classmethod
    def of(
        cls, settings: JobSettings, storage: Storage, reldir: str, seed: int, config_hash: str, on_step: OnStep = None
    ) -> Job:
        device = resolve_device(settings.device)
        return cls(
            storage,
            reldir,
            settings.optim,
            settings.image_size,
            seed,
            settings.checkpoint_every,
            device,
            config_hash,
            loader_workers(settings.workers, device),
            on_step,
        )


def train_supervised(
    job: Job,
    model: torch.nn.Module,
    manifests: list[Manifest] | None = None,
    real: LabelledImages | None = None,
    batch_norm: str = "train",
) -> LoopResult:
    """Cross-entropy training with random resized crops and flips, on synthetic shards or a real set."""

    def train_mode() -> None:
        model.train()
        if batch_norm == "frozen":
            set_batch_norm_frozen(model)

    def step_loss(batch: Batch) -> torch.Tensor:
        (images,), labels = _to(batch, job.device)
        return F.cross_entropy(model(images), labels)

    return _train(job, model, _source(job, manifests, real), [train_transform(job.image_size)], step_loss, train_mode)


def train_moco(job: Job, model: MoCo, manifests: list[Manifest]) -> LoopResult:
    """MoCo v2 on synthetic shards: two augmented views of each image, InfoNCE against the queue."""

    def step_loss(batch: Batch) -> torch.Tensor:
        (view_q, view_k), _ = _to(batch, job.device)
        return model(view_q, view_k)

    views = [moco_v2_transform(job.image_size)] * 2
    return _train(job, model, _source(job, manifests, None), views, step_loss, model.train)


def _train(
    job: Job,
    model: torch.nn.Module,
    source: tuple[int, Callable[[int, int], Iterator]],
    views: list[Transform],
    step_loss: Callable[[Batch], torch.Tensor],
    train_mode: Callable[[], object],
) -> LoopResult:
    """The loop of every job: its steps per epoch, its batches, checkpoints under its folder."""
    count, examples = source
    model.to(job.device)
    return run_loop(
        model,
        job.optim,
        _steps_per_epoch(count, job.optim.batch_size),
        _epochs(examples, job.optim.batch_size, views, job.workers, job.device),
        step_loss,
        Checkpointer(job.storage, f"{job.reldir}/ckpt", job.config_hash),
        job.checkpoint_every,
        train_mode,
        job.on_step,
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
