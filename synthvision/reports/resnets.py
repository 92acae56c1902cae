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

    def line(self) -> str:
        return f"{self.method} {self.arch}, {self.steps} steps on {self.synthetic_images} images: {self.backbone}"


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

    def line(self) -> str:
        results = ", ".join(f"{row.init} {row.top1:.2f}%" for row in self.results)
        return f"top-1 on {self.dataset} ({self.arch}, {self.pretraining}): {results}"


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

    def line(self) -> str:
        results = ", ".join(f"{row.data} ({row.images} images) {row.top1:.2f}%" for row in self.results)
        return f"top-1 on {self.test_set} ({self.arch}): {results}"
