"""The typed run config: one YAML file, overridable from the CLI, validated before any work starts.

Every stage's outputs are tagged with that stage's hash (`synthvision.core.stage_table.stage_hash`), computed only
from the fields that change those outputs. Changing the training learning rate therefore reuses every
generated shard and every CLIP score, while changing the generator's guidance scale regenerates the
shards and everything downstream. Fields that only change *how* work runs (device, batch sizes,
retries, workers) are in no hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthvision.core.errors import ConfigError
from synthvision.core.paths import resolve_paths, resolved


class _Section(BaseModel):
    # Unknown keys are errors: a typo such as `guidence_scale` must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


def _check_templates(value: list[str] | None, field: str) -> list[str] | None:
    """A template list: absent (the default), or non-empty templates with one `{}` each."""
    if value is not None:
        if not value:
            raise ValueError(f"{field} must not be empty (omit it for the default)")
        for template in value:
            _check_template(template)
    return value


def _check_template(template: str | None) -> str | None:
    if template is not None and template.count("{}") != 1:
        raise ValueError(f"template {template!r} must contain exactly one '{{}}' placeholder")
    return template


class SentenceModelConfig(_Section):
    """The word-to-sentence seq2seq model of the LE strategy (the paper: T5-base fine-tuned on CommonGen)."""

    model: str = Field("tiny", description="hub id, local folder, or 'tiny' (built from config, offline)")
    input_template: str = Field("{}", description="how a class name is put to the model")
    max_new_tokens: int = Field(
        19, gt=0, description="the paper's code: max_length 20, the decoder's start token included"
    )
    top_k: int | None = Field(50, gt=0, description="sample from the k likeliest tokens (None: all)")
    top_p: float = Field(1.0, gt=0, le=1)
    temperature: float = Field(1.0, gt=0)
    batch_size: int = Field(50, gt=0)
    device: str = "auto"

    _template = field_validator("input_template")(_check_template)


class LLMConfig(_Section):
    """The instruct model of the `llm` strategy: any transformers causal LM with a chat template."""

    model: str = Field(
        "tiny", description="hub id, local folder (with `gguf_file`: the folder of a GGUF file), or 'tiny' (offline)"
    )
    gguf_file: str | None = Field(
        None, description="a GGUF file in `model`'s folder, loaded by transformers (pip install gguf)"
    )
    instruction: str = Field(
        "Write one short sentence describing a photo of a {}.",
        description="the user message per class: {} is the class name",
    )
    contexts: list[str] = Field(
        [], description="optional settings cycled over a class's sentences, each added as ' Setting: <context>.'"
    )
    max_new_tokens: int = Field(40, gt=0)
    top_k: int | None = Field(50, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    temperature: float = Field(0.9, gt=0)
    batch_size: int = Field(16, gt=0, description="sentences sampled at once (part of the seed: in the hash)")
    device: str = "auto"

    _instruction = field_validator("instruction")(_check_template)


class PromptsConfig(_Section):
    """Prompt expansion: strategy B (`basic`), LE (`language_enhancement`: a seq2seq model writes
    sentences from the class name) or `llm` (an instruct model writes them from an instruction)."""

    strategy: Literal["basic", "language_enhancement", "llm"] = "basic"
    template: str | None = Field(None, description="default per label space, e.g. 'a photo of a {}'")
    sentences_per_class: int = Field(200, gt=0, description="LE, llm: sentences kept per class")
    oversample: int = Field(50, ge=0, description="LE, llm: sentences sampled beyond those kept, before dedupe")
    require_class_name: bool = Field(False, description="LE, llm: keep only sentences that name the class")
    sentence_model: SentenceModelConfig = SentenceModelConfig()
    llm: LLMConfig = LLMConfig()

    _template = field_validator("template")(_check_template)


class GlideConfig(_Section):
    """GLIDE sampling (generator.backend: glide), as in the paper (A.1.2, A.7.1)."""

    base_respacing: str = Field(
        "100", description="base model steps: a count, section counts ('10,10,3'), 'ddimN' or 'fast27'"
    )
    upsample: bool = Field(True, description="run the 64 -> 256 px upsampler (off: 64 px images)")
    upsample_respacing: str = Field("fast27", description="upsampler steps, as base_respacing")
    upsample_temperature: float = Field(0.997, gt=0, description="scale of the upsampler's initial noise")
    upsample_sampler: Literal["ddim", "ancestral"] = Field(
        "ddim", description="ddim: deterministic DDIM (eta 0), as glide-text2im; ancestral: noise every step"
    )

    @field_validator("base_respacing", "upsample_respacing", mode="before")
    @classmethod
    def _respacing(cls, value: Any) -> Any:
        """A step count may be written as a number (`--set generator.glide.base_respacing=25` reads 25)."""
        from synthvision.core.respacing import respaced_steps

        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if isinstance(value, str) and len(respaced_steps(value)) < 2:  # raises ValueError naming other problems
            raise ValueError(f"respacing {value!r} keeps 1 step: GLIDE's sampler needs at least 2")
        return value


class GeneratorConfig(_Section):
    """The text-to-image model."""

    backend: Literal["diffusers", "glide", "tiny", "loadtest"] = Field(
        "tiny", description="loadtest: no model, cheap images after `seconds_per_batch` (load tests)"
    )
    model: str | None = Field(
        None, description="diffusers: hub id or local folder of a DiffusionPipeline; glide: weights folder or 'tiny'"
    )
    guidance_scale: float = Field(3.0, ge=0, description="classifier-free guidance scale (paper: 3)")
    steps: int = Field(50, gt=0, description="diffusers: denoising steps (glide: glide.base_respacing)")
    resolution: int = Field(256, gt=0, multiple_of=8)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = "auto"
    batch_size: int = Field(8, gt=0)
    image_format: Literal["png", "jpg", "webp", "webp-lossless"] = Field(
        "png", description="how images are stored in the shards (README: Benchmarks has each one's cost)"
    )
    image_quality: int = Field(95, ge=1, le=100, description="jpg and lossy webp quality")
    png_compress_level: int = Field(6, ge=0, le=9, description="png's zlib level (Pillow's default 6)")
    workers: int | None = Field(
        None, ge=0, description="threads that encode and write images while the model runs; default: cores, ≤ 8"
    )
    seconds_per_batch: float = Field(0.0, ge=0, description="loadtest: the model time it simulates per batch")
    compile: bool = Field(False, description="torch.compile the denoiser (GLIDE's base and upsampler, a UNet)")
    glide: GlideConfig = GlideConfig()

    @model_validator(mode="after")
    def _model_for_backend(self) -> GeneratorConfig:
        if self.backend in ("diffusers", "glide") and not self.model:
            raise ValueError(f"generator.model is required when generator.backend is {self.backend!r}")
        return self


class ShardsConfig(_Section):
    images_per_class: int = Field(2000, gt=0, description="paper: 2000 for B and LE")
    shard_size: int = Field(1000, gt=0, description="images per WebDataset tar")


class ClipConfig(_Section):
    """The CLIP model used to score, filter and (frozen) to encode images for training."""

    model: str = Field(
        "tiny",
        description="open_clip name (e.g. RN50), 'local-dir:PATH', 'tiny' (ViT), 'tiny-rn' (ResNet with BatchNorm) "
        "or 'loadtest' (no model: load tests)",
    )
    pretrained: str | None = Field(None, description="open_clip pretrained tag or checkpoint file")
    templates: list[str] | None = Field(None, description="zero-shot templates; default: the label space's")
    quick_gelu: bool | None = Field(
        None,
        description="QuickGELU activations; default: as the pretrained weights were trained (OpenAI's: on)",
    )
    batch_size: int = Field(256, gt=0)
    device: str = "auto"
    workers: int | None = Field(
        None, ge=0, description="threads that decode and preprocess images while CLIP runs; default: cores, ≤ 8"
    )
    seconds_per_batch: float = Field(0.0, ge=0, description="loadtest: the model time it simulates per batch")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="autocast dtype; auto: float16 on CUDA, float32 on CPU"
    )
    compile: bool = Field(False, description="torch.compile CLIP's image tower")

    @property
    def uses_quick_gelu(self) -> bool:
        """`quick_gelu`, else on for OpenAI's weights (`pretrained: openai`): they were trained with it,
        and open_clip builds a plain name such as `RN50` with GELU. (Other checkpoints trained with
        QuickGELU have `-quickgelu` names in open_clip, which set it themselves.)"""
        return self.quick_gelu if self.quick_gelu is not None else self.pretrained == "openai"

    _templates = field_validator("templates")(lambda value, info: _check_templates(value, f"clip.{info.field_name}"))


class FilterConfig(_Section):
    """CF: keep synthetic images whose CLIP confidence for their own class is at least `threshold`."""

    clip_filter: bool = True
    threshold: float | None = Field(None, ge=0, le=1, description="default 1/N for N classes (paper)")
    templates: list[str] | None = Field(None, description="CF's prompts (averaged); default: the label space's one")
    per_class: int | None = Field(
        800,
        gt=0,
        description="images kept per class: drawn among those passing, or the most confident when fewer "
        "pass (paper: 800); null keeps every passing image",
    )
    near_duplicates: float | None = Field(
        None,
        gt=0,
        le=1,
        description="after CF: of each group of a class's kept images whose CLIP features are at least this "
        "cosine-similar, keep only the first (in shard order); null: off",
    )

    _templates = field_validator("templates")(lambda value, info: _check_templates(value, f"filter.{info.field_name}"))


class TrainingConfig(_Section):
    """Classifier tuning (CT) on the frozen CLIP image encoder; defaults are the paper's (A.7.1)."""

    loss: Literal["ce", "sce"] = "sce"
    temperature: float = Field(2.0, gt=0, description="SCE: temperature on the CLIP logits")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="on the labels' CE term (the paper's --ls)")
    hard_pseudo_labels: bool = Field(False, description="SCE's soft term against CLIP's top class instead")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(512, gt=0)
    device: str = "auto"


class RealFilterConfig(_Section):
    """RF: drop a synthetic image of class c when more than half of its k nearest real shots (cosine
    similarity of CLIP image features) belong to other classes."""

    enabled: bool = False
    k: int = Field(1, gt=0, description="nearest real shots that vote")


# Real guidance start steps t* of 100 per shot count (paper A.2): more shots, less noise on the reference.
PAPER_START_STEPS = {16: 15, 8: 20, 4: 35, 2: 40, 1: 50}


class RealGuidanceConfig(_Section):
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


class FewShotConfig(_Section):
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
    phase_lr: float = Field(2e-3, gt=0, description="real_only and each phase of the phase-wise strategies")
    epochs: int = Field(30, gt=0, description="per phase; mix counts epochs over the synthetic data")
    weight_decay: float = Field(0.1, ge=0)
    synthetic_loss: Literal["ce", "sce"] = Field(
        "sce", description="loss on the synthetic part (sce: half CE, half soft CLIP targets, as the paper's code)"
    )
    temperature: float = Field(2.0, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="on every CE term, real and synthetic")
    hard_pseudo_labels: bool = Field(False, description="the synthetic soft term against CLIP's top class")
    batch_norm: Literal["frozen", "train"] = Field(
        "frozen", description="train: BatchNorm of the image tower uses and updates batch statistics (Table 6)"
    )
    tune_encoder: bool = Field(False, description="also tune the image tower's weights (at encoder_lr)")
    encoder_lr: float = Field(1e-5, gt=0)
    device: str = "auto"

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


class OptimConfig(_Section):
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


class MocoConfig(_Section):
    """MoCo v2's hyper-parameters (Chen et al. 2020)."""

    dim: int = Field(128, gt=0)
    queue_size: int = Field(65536, gt=0)
    momentum: float = Field(0.999, ge=0, lt=1)
    temperature: float = Field(0.2, gt=0)
    mlp_hidden: int = Field(2048, gt=0)


class PretrainConfig(_Section):
    """Pre-training a ResNet on the run's synthetic shards (paper 3.3, A.7.3)."""

    method: Literal["supervised", "moco"] = "supervised"
    arch: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    image_size: int = Field(224, gt=0)
    optim: OptimConfig = OptimConfig()  # paper, downstream-agnostic supervised: 90 epochs, lr 0.2 x0.1 every 30, bs 512
    moco: MocoConfig = MocoConfig()
    init_backbone: str | None = Field(
        None, description="start from this backbone (.safetensors, torchvision/timm ResNet keys), e.g. ImageNet weights"
    )
    checkpoint_every: int = Field(1000, gt=0, description="steps between checkpoints in the run's storage")
    device: str = "auto"
    workers: int | None = _loader_workers()


class TransferConfig(_Section):
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
    checkpoint_every: int = Field(1000, gt=0)
    device: str = "auto"
    workers: int | None = _loader_workers()


class ScratchConfig(_Section):
    """A ResNet from random init on the synthetic shards, and on k real images per class (Table 4)."""

    arch: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    image_size: int = Field(224, gt=0)
    synthetic: bool = Field(True, description="train on the run's synthetic shards")
    real_train_set: str | None = Field(None, description="real labelled pool for the k-per-class runs")
    format: Literal["auto", "imagefolder", "webdataset", "idx"] = "auto"
    real_per_class: list[int] = Field([], description="k real images per class, one run each")
    optim: OptimConfig = OptimConfig(epochs=100, batch_size=256, lr=0.1, lr_milestones=[50, 75])
    checkpoint_every: int = Field(1000, gt=0)
    device: str = "auto"
    workers: int | None = _loader_workers()

    @model_validator(mode="after")
    def _real_pool_for_k(self) -> ScratchConfig:
        if self.real_per_class and not self.real_train_set:
            raise ValueError("scratch.real_per_class needs scratch.real_train_set")
        return self


class DemoTestSetConfig(_Section):
    """A rendered test set (one colour per class) so the demo evaluates on real files offline."""

    per_class: int = Field(10, gt=0)
    size: int = Field(32, gt=0)


class EvaluationConfig(_Section):
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


class QualityConfig(_Section):
    """The data-quality report (the `quality` command): per class, CF pass rate, diversity of the kept
    images and of the prompts, near-duplicates and the distance to real test images."""

    near_duplicate_threshold: float = Field(
        0.95, gt=0, le=1, description="cosine similarity of CLIP features at or above which images are near-duplicates"
    )


class OrchestrationConfig(_Section):
    """How Prefect runs the shard tasks; changes nothing in the outputs."""

    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(10.0, ge=0, description="first retry delay; doubles each retry")
    retry_jitter: float = Field(0.5, ge=0, description="random extra delay, as a fraction of the delay")
    max_workers: int = Field(2, gt=0, description="shard tasks running at once in one flow run")
    max_in_flight: int = Field(64, gt=0, description="shard futures submitted but not finished, per flow run")
    shards_per_flow_run: int = Field(
        500, gt=0, description="shards per wave sub-flow (Prefect slows past thousands of task runs per flow run)"
    )
    engine: Literal["threads", "processes", "dask"] = Field(
        "threads",
        description="where shard tasks run: threads of the flow process (max_workers of them); one worker "
        "process per entry of `devices`, each bound to its device; or a Dask cluster",
    )
    devices: list[str] = Field(
        default_factory=lambda: ["auto"],
        description=(
            "engine 'processes': one worker process per entry ('auto': one per CUDA GPU here, or one CPU worker)"
        ),
    )
    dask_address: str | None = Field(
        None, description="engine 'dask': scheduler address; empty starts a local cluster of max_workers processes"
    )
    gpu_limit: str | None = Field(
        "gpu",
        min_length=1,
        description="Prefect global concurrency limit a model task holds one slot of while it computes; "
        "null: none (one machine: the flow run's own workers bound model work, and a SQLite server is spared "
        "the slot writes)",
    )
    gpu_slots: int | None = Field(
        None,
        gt=0,
        description="set the gpu_limit to this many slots before running; empty: create it if missing with one slot "
        "per local worker (len(devices) or max_workers) and otherwise leave the operator's setting",
    )
    lock_ttl_s: float = Field(
        300.0,
        gt=0,
        description="a run's lock on its output expires this long after its holder's last heartbeat "
        "(a holder on this host that is gone loses it at once)",
    )
    lock_wait_s: float = Field(
        86400.0, ge=0, description="how long a run waits for another run writing the same output"
    )
    new_version: bool = Field(
        False,
        description="let this config replace the data of a different config in the output (`--new-version`); "
        "without it such a run is refused, so that one output never mixes two configs' shards",
    )
    gpu_lease_s: float = Field(
        60.0,
        ge=60,
        description="lease on a held gpu slot, renewed while its task lives: a killed worker's slot returns "
        "to the pool within this plus Prefect's 15 s lease sweep (60 is Prefect's minimum)",
    )

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one device (or 'auto')")
        return value

    @model_validator(mode="after")
    def _address_needs_dask(self) -> OrchestrationConfig:
        if self.dask_address and self.engine != "dask":
            raise ValueError(f"dask_address is set but engine is {self.engine!r}: set engine: dask")
        return self


def _flatten_keys(options: dict[str, Any]) -> list[str]:
    keys = []
    for key, value in options.items():
        keys.append(str(key))
        if isinstance(value, dict):
            keys += _flatten_keys(value)
    return keys


class RunConfig(_Section):
    run_name: str = Field("synthvision", min_length=1)
    output: str = Field("./runs/synthvision", min_length=1, description="any fsspec URL")
    base_dir: str | None = Field(
        None, description="the config file's folder, which its relative paths were resolved against (set on load)"
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for output and test set (e.g. endpoint_url); never credentials",
    )
    seed: int = Field(0, ge=0)
    label_space: str = Field(
        "cifar10", description="built-in name (the 17 datasets of Table 1, fashion-mnist) or a file"
    )
    prompts: PromptsConfig = PromptsConfig()
    generator: GeneratorConfig = GeneratorConfig()
    shards: ShardsConfig = ShardsConfig()
    clip: ClipConfig = ClipConfig()
    filter: FilterConfig = FilterConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    fewshot: FewShotConfig | None = Field(None, description="few-shot runs over real shots; the `fewshot` command")
    quality: QualityConfig | None = Field(None, description="the data-quality report; the `quality` command")
    pretrain: PretrainConfig | None = Field(None, description="the `pretrain` command")
    transfer: TransferConfig | None = Field(None, description="the `transfer` command (after pretrain)")
    scratch: ScratchConfig | None = Field(None, description="the `scratch` command")
    orchestration: OrchestrationConfig = OrchestrationConfig()

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Configs are recorded in run.json and Prefect parameters: credentials must stay in the
        environment (AWS_ACCESS_KEY_ID, ...) or a credentials file, never here."""
        for key in _flatten_keys(value):
            if any(word in key.lower() for word in ("key", "secret", "token", "password", "credential")):
                raise ValueError(f"{key!r} looks like a credential: set it in the environment, not in the config")
        return value

    @field_validator("output")
    @classmethod
    def _absolute_local_output(cls, value: str) -> str:
        """A local output path is made absolute when the config is read (a file's, against its folder,
        by `load_config`; one given in Python, against the working directory): the run and its records
        then name one place, whatever the working directory of the process using them."""
        return resolved(value, Path.cwd(), always=True)

    @model_validator(mode="after")
    def _workers_own_their_devices(self) -> RunConfig:
        """With one worker process per device, each worker's models go on its own device, which is
        what `device: auto` means there; a fixed device would put every worker on the same one."""
        if self.orchestration.engine == "processes":
            sections = {
                "prompts.sentence_model": self.prompts.sentence_model,
                "generator": self.generator,
                "clip": self.clip,
                "training": self.training,
            }
            for name, section in sections.items():
                if section.device != "auto":
                    raise ValueError(
                        f"{name}.device is {section.device!r}, but engine 'processes' binds each worker to one "
                        "of orchestration.devices: use device: auto"
                    )
        return self


def _format_validation_error(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling against the config reference in README.md)"
        problems.append(f"{field}: {message}")
    return f"invalid config {source}: " + "; ".join(problems)


def _parse_override(override: str) -> tuple[list[str], Any]:
    if "=" not in override:
        raise ConfigError(f"invalid override {override!r}: expected KEY=VALUE, e.g. training.epochs=5")
    key, raw = override.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"invalid override {override!r}: empty key")
    return path, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML scalars) to a nested config dict."""
    for override in overrides:
        path, value = _parse_override(override)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"invalid override {override!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply CLI overrides, validate; a problem raises one-line `ConfigError`.
    Relative paths in the file resolve against its folder, those of overrides against the working
    directory (see PATHS)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of fields, not {type(data).__name__}")
    base = path.expanduser().absolute().parent
    data = resolve_paths(data, base)
    if overrides:
        overridden = tuple(".".join(_parse_override(override)[0]) for override in overrides)
        data = resolve_paths(apply_overrides(data, overrides), Path.cwd(), only=overridden)
    return parse_config({**data, "base_dir": str(base)}, source=str(path))


def parse_config(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None
