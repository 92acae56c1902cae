"""The config sections that learn from the data and measure it: classifier tuning, few-shot, the
ResNet jobs (pretrain, transfer, scratch), evaluation and quality. Part of the run config
(`core/config.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from synthvision.core.section import Added, Runtime, Section


class TrainingConfig(Section):
    """Classifier tuning (CT) on the frozen CLIP image encoder; defaults are the paper's (A.7.1)."""

    loss: Literal["ce", "sce"] = "sce"
    temperature: float = Field(2.0, gt=0, description="SCE: temperature on the CLIP logits")
    label_smoothing: Annotated[float, Added(0.0)] = Field(
        0.0, ge=0, lt=1, description="on the labels' CE term (the paper's --ls)"
    )
    hard_pseudo_labels: Annotated[bool, Added(False)] = Field(
        False, description="SCE's soft term against CLIP's top class instead"
    )
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(512, gt=0)
    device: Annotated[str, Runtime] = "auto"


class RealFilterConfig(Section):
    """RF: drop a synthetic image of class c when more than half of its k nearest real shots (cosine
    similarity of CLIP image features) belong to other classes."""

    enabled: bool = False
    k: int = Field(1, gt=0, description="nearest real shots that vote")


# Real guidance start steps t* of 100 per shot count (paper A.2): more shots, less noise on the reference.
PAPER_START_STEPS = {16: 15, 8: 20, 4: 35, 2: 40, 1: 50}


class RealGuidanceConfig(Section):
    """RG: generate each synthetic image from a real shot of its class, noised to step t* of 100 and
    denoised with the class's prompt (SDEdit / img2img), instead of from pure noise."""

    enabled: bool = False
    shots: int = Field(
        16, gt=0, description="M: shots per class used as references (the class's budget is split over them)"
    )
    start_step: int | None = Field(
        None, gt=0, le=100, description="t* of 100; none: the paper's for M (16:15, 8:20, 4:35, 2:40, 1:50)"
    )

    @model_validator(mode="after")
    def _start_step_known(self) -> RealGuidanceConfig:
        if self.enabled and self.start_step is None and self.shots not in PAPER_START_STEPS:
            raise ValueError(f"no paper start step for {self.shots} shots: set fewshot.real_guidance.start_step")
        return self

    @property
    def strength(self) -> float:
        """t* / 100: the fraction of the denoising schedule the reference is noised to."""
        return (self.start_step or PAPER_START_STEPS[self.shots]) / 100


class FewShotConfig(Section):
    """Few-shot CT with synthetic data (paper 3.2, A.7.2) on the frozen CLIP encoder ("BN frozen")."""

    train_set: str = Field(
        ...,
        min_length=1,
        description="real labelled pool the shots are drawn from: image folder, WebDataset tar(s) or idx images file",
    )
    format: Literal["auto", "imagefolder", "webdataset", "idx"] = "auto"
    shots: list[int] = Field([1, 2, 4, 8, 16], min_length=1, description="M real images per class, one run each")
    strategies: list[Literal["real_only", "syn_only", "mix", "syn_then_real", "real_then_syn"]] = Field(
        ["real_only", "mix", "syn_then_real", "real_then_syn"],
        min_length=1,
        description="real_only is CT w. init on the shots alone; syn_only on synthetic data alone",
    )
    real_filter: RealFilterConfig = RealFilterConfig()
    real_guidance: RealGuidanceConfig = RealGuidanceConfig()
    real_batch_size: int = Field(32, gt=0)
    synthetic_batch_size: int = Field(512, gt=0)
    mix_lr: float = Field(1e-3, gt=0)
    mix_schedule: Annotated[Literal["synthvision", "paper_code"], Added("synthvision")] = Field(
        "synthvision",
        description="mix's steps: synthvision's (a real batch of real_batch_size and a synthetic batch of "
        "synthetic_batch_size per step, one cosine over every epoch), or paper_code: as the released code runs "
        "with its README's flags (batches of 128 of each, its cosine counted in 512-image steps, gradients "
        "clipped at norm 1)",
    )
    phase_lr: float = Field(2e-3, gt=0, description="real_only and each phase of the phase-wise strategies")
    epochs: int = Field(30, gt=0, description="per phase; mix counts epochs over the synthetic data")
    weight_decay: float = Field(0.1, ge=0)
    synthetic_loss: Literal["ce", "sce"] = Field(
        "sce", description="loss on the synthetic part (sce: half CE, half soft CLIP targets, as the paper's code)"
    )
    temperature: float = Field(2.0, gt=0)
    label_smoothing: Annotated[float, Added(0.0)] = Field(
        0.0, ge=0, lt=1, description="on every CE term, real and synthetic"
    )
    hard_pseudo_labels: Annotated[bool, Added(False)] = Field(
        False, description="the synthetic soft term against CLIP's top class"
    )
    batch_norm: Literal["frozen", "train"] = Field(
        "frozen", description="train: BatchNorm of the image tower uses and updates batch statistics (Table 6)"
    )
    tune_encoder: bool = Field(False, description="also tune the image tower's weights (at encoder_lr)")
    encoder_lr: float = Field(1e-5, gt=0)
    device: Annotated[str, Runtime] = "auto"

    @field_validator("shots")
    @classmethod
    def _positive_shots(cls, value: list[int]) -> list[int]:
        if any(shots <= 0 for shots in value):
            raise ValueError(f"shots must be positive, got {value}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _guided_data_for_its_shots(self) -> FewShotConfig:
        """Data guided by M shots per class holds what M real images look like: evaluating it at
        fewer shots would let more real data in than the shot count says."""
        guidance = self.real_guidance
        if guidance.enabled and self.shots != [guidance.shots]:
            raise ValueError(
                f"real guidance from {guidance.shots} shots: set fewshot.shots to [{guidance.shots}] (one run "
                "per shot count)"
            )
        return self


def _loader_workers() -> Any:
    """The `workers` field of the ResNet jobs (pretrain, transfer, scratch)."""
    return Field(
        None, ge=0, description="DataLoader processes that decode and augment; default: cores (≤ 8) on a GPU, 0 on CPU"
    )


class OptimConfig(Section):
    """SGD with momentum (or AdamW) and a learning-rate schedule: `step` multiplies it by `lr_gamma`
    at each of `lr_milestones` (epochs); `cosine` anneals it to 0."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    epochs: int = Field(90, gt=0)
    batch_size: int = Field(512, gt=0)
    lr: float = Field(0.2, gt=0)
    momentum: float = Field(0.9, ge=0, description="sgd only")
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["step", "cosine"] = "step"
    lr_milestones: list[int] = Field(
        [30, 60], description="epochs at which a step schedule multiplies the lr by lr_gamma"
    )
    lr_gamma: float = Field(0.1, gt=0)


class MocoConfig(Section):
    """MoCo v2's hyper-parameters (Chen et al. 2020)."""

    dim: int = Field(128, gt=0)
    queue_size: int = Field(65536, gt=0)
    momentum: float = Field(0.999, ge=0, lt=1)
    temperature: float = Field(0.2, gt=0)
    mlp_hidden: int = Field(2048, gt=0)


class PretrainConfig(Section):
    """Pre-training a ResNet on the run's synthetic shards (paper 3.3, A.7.3)."""

    method: Literal["supervised", "moco"] = "supervised"
    arch: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    image_size: int = Field(224, gt=0)
    optim: OptimConfig = OptimConfig()  # paper, downstream-agnostic supervised: 90 epochs, lr 0.2 x0.1 every 30, bs 512
    moco: MocoConfig = MocoConfig()
    init_backbone: str | None = Field(
        None, description="start from this backbone (.safetensors, torchvision/timm ResNet keys), e.g. ImageNet weights"
    )
    checkpoint_every: Annotated[int, Runtime] = Field(
        1000, gt=0, description="steps between checkpoints in the run's storage"
    )
    device: Annotated[str, Runtime] = "auto"
    workers: Annotated[int | None, Runtime] = _loader_workers()


class TransferConfig(Section):
    """Fine-tuning a pre-trained backbone on a real dataset, against the same from random init."""

    label_space: str = Field(..., description="the real dataset's classes (built-in name or file), e.g. cifar100")
    train_set: str = Field(..., min_length=1, description="image folder, WebDataset tar(s) or idx images file")
    per_class: int | None = Field(
        None, gt=0, description="fine-tune on this many images per class of train_set (seeded); empty: all"
    )
    test_set: str = Field(..., min_length=1)
    format: Literal["auto", "imagefolder", "webdataset", "idx"] = "auto"
    image_size: int = Field(224, gt=0)
    inits: list[Literal["pretrained", "random"]] = Field(["pretrained", "random"], min_length=1)
    optim: OptimConfig = OptimConfig(
        epochs=200, batch_size=128, lr=0.003, weight_decay=5e-4, lr_milestones=[60, 120, 160], lr_gamma=0.2
    )
    batch_norm: Literal["train", "frozen"] = Field(
        "train", description="frozen: BatchNorm keeps its running statistics"
    )
    checkpoint_every: Annotated[int, Runtime] = Field(1000, gt=0)
    device: Annotated[str, Runtime] = "auto"
    workers: Annotated[int | None, Runtime] = _loader_workers()


class ScratchConfig(Section):
    """A ResNet from random init on the synthetic shards, and on k real images per class (Table 4)."""

    arch: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    image_size: int = Field(224, gt=0)
    synthetic: bool = Field(True, description="train on the run's synthetic shards")
    real_train_set: str | None = Field(None, description="real labelled pool for the k-per-class runs")
    format: Literal["auto", "imagefolder", "webdataset", "idx"] = "auto"
    real_per_class: list[int] = Field([], description="k real images per class, one run each")
    optim: OptimConfig = OptimConfig(epochs=100, batch_size=256, lr=0.1, lr_milestones=[50, 75])
    checkpoint_every: Annotated[int, Runtime] = Field(1000, gt=0)
    device: Annotated[str, Runtime] = "auto"
    workers: Annotated[int | None, Runtime] = _loader_workers()

    @model_validator(mode="after")
    def _real_pool_for_k(self) -> ScratchConfig:
        if self.real_per_class and not self.real_train_set:
            raise ValueError("scratch.real_per_class needs scratch.real_train_set")
        return self


class DemoTestSetConfig(Section):
    """A rendered test set (one colour per class) so the demo evaluates on real files offline."""

    per_class: int = Field(10, gt=0)
    size: int = Field(32, gt=0)


class EvaluationConfig(Section):
    test_set: str | None = Field(
        None, description="image folder (CLASS/*.png), WebDataset tar(s), or an idx images file (labels file beside it)"
    )
    format: Literal["auto", "imagefolder", "webdataset", "idx"] = "auto"
    demo_test_set: DemoTestSetConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EvaluationConfig:
        if self.test_set and self.demo_test_set:
            raise ValueError("set evaluation.test_set or evaluation.demo_test_set, not both")
        return self


class QualityConfig(Section):
    """The data-quality report (the `quality` command): per class, CF pass rate, diversity of the kept
    images and of the prompts, near-duplicates and the distance to real test images."""

    near_duplicate_threshold: float = Field(
        0.95, gt=0, le=1, description="cosine similarity of CLIP features at or above which images are near-duplicates"
    )
