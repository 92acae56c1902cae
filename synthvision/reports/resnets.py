"""The ResNet stages' reports (pretrain, transfer, scratch): their shapes, stored as `<stage>/report.json`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainReport:
    config_hash: str  # the pretrain stage's hash: commits the stage
    method: str  # supervised or moco
    arch: str
    backbone: str  # where the exported backbone is
    synthetic_images: int
    steps: int
    resumed_from_step: int | None
    epoch_losses: list[float]


@dataclass(frozen=True)
class TransferRow:
    init: str  # pretrained or random
    top1: float
    steps: int


@dataclass(frozen=True)
class TransferReport:
    config_hash: str
    dataset: str
    train_images: int
    test_images: int
    pretraining: str
    arch: str
    results: list[TransferRow]


@dataclass(frozen=True)
class ScratchRow:
    data: str  # synthetic, or real-<k>-per-class
    images: int
    top1: float
    steps: int


@dataclass(frozen=True)
class ScratchReport:
    config_hash: str
    arch: str
    test_set: str
    test_images: int
    results: list[ScratchRow]
