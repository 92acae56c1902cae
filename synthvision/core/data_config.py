"""The config sections that make the data: prompts (and their sentence models), the generator,
shards, CLIP and its filter. Part of the run config (`core/config.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from synthvision.core.section import Added, ByPart, Runtime, Section


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


class SentenceModelConfig(Section):
    """The word-to-sentence seq2seq model of the LE strategy (the paper: T5-base fine-tuned on CommonGen)."""

    model: str = Field("tiny", description="hub id, local folder, or 'tiny' (built from config, offline)")
    input_template: str = Field("{}", description="how a class name is put to the model")
    max_new_tokens: int = Field(
        19, gt=0, description="the paper's code: max_length 20, the decoder's start token included"
    )
    top_k: Annotated[int | None, Added(50)] = Field(
        50, gt=0, description="sample from the k likeliest tokens (None: all)"
    )
    top_p: float = Field(1.0, gt=0, le=1)
    temperature: float = Field(1.0, gt=0)
    batch_size: Annotated[int, Runtime] = Field(50, gt=0)
    device: Annotated[str, Runtime] = "auto"

    _template = field_validator("input_template")(_check_template)


class LLMConfig(Section):
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
    device: Annotated[str, Runtime] = "auto"

    _instruction = field_validator("instruction")(_check_template)


class PromptsConfig(Section):
    """Prompt expansion: strategy B (`basic`), LE (`language_enhancement`: a seq2seq model writes
    sentences from the class name) or `llm` (an instruct model writes them from an instruction)."""

    strategy: Literal["basic", "language_enhancement", "llm"] = "basic"
    template: str | None = Field(None, description="default per label space, e.g. 'a photo of a {}'")
    sentences_per_class: int = Field(200, gt=0, description="LE, llm: sentences kept per class")
    oversample: Annotated[int, Added(0)] = Field(
        50, ge=0, description="LE, llm: sentences sampled beyond those kept, before dedupe"
    )
    require_class_name: Annotated[bool, Added(True)] = Field(
        False, description="LE, llm: keep only sentences that name the class"
    )
    sentence_model: SentenceModelConfig = SentenceModelConfig()
    llm: LLMConfig = LLMConfig()

    _template = field_validator("template")(_check_template)


class GlideConfig(Section):
    """GLIDE sampling (generator.backend: glide), as in the paper (A.1.2, A.7.1)."""

    base_respacing: str = Field(
        "100", description="base model steps: a count, section counts ('10,10,3'), 'ddimN' or 'fast27'"
    )
    upsample: bool = Field(True, description="run the 64 -> 256 px upsampler (off: 64 px images)")
    upsample_respacing: str = Field("fast27", description="upsampler steps, as base_respacing")
    upsample_temperature: float = Field(0.997, gt=0, description="scale of the upsampler's initial noise")
    upsample_sampler: Annotated[Literal["ddim", "ancestral"], ByPart("generator.glide.upsample_sampler")] = Field(
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


class GeneratorConfig(Section):
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
    device: Annotated[str, Runtime] = "auto"
    batch_size: Annotated[int, Runtime] = Field(8, gt=0)
    image_format: Literal["png", "jpg", "webp", "webp-lossless"] = Field(
        "png", description="how images are stored in the shards (README: Benchmarks has each one's cost)"
    )
    image_quality: Annotated[int, ByPart("generator.image_encoding")] = Field(
        95, ge=1, le=100, description="jpg and lossy webp quality"
    )
    png_compress_level: Annotated[int, ByPart("generator.image_encoding")] = Field(
        6, ge=0, le=9, description="png's zlib level (Pillow's default 6)"
    )
    workers: Annotated[int | None, Runtime] = Field(
        None, ge=0, description="threads that encode and write images while the model runs; default: cores, ≤ 8"
    )
    seconds_per_batch: Annotated[float, Runtime] = Field(
        0.0, ge=0, description="loadtest: the model time it simulates per batch"
    )
    compile: Annotated[bool, Runtime] = Field(
        False, description="torch.compile the denoiser (GLIDE's base and upsampler, a UNet)"
    )
    glide: GlideConfig = GlideConfig()

    @model_validator(mode="after")
    def _model_for_backend(self) -> GeneratorConfig:
        if self.backend in ("diffusers", "glide") and not self.model:
            raise ValueError(f"generator.model is required when generator.backend is {self.backend!r}")
        return self


class TopUpConfig(Section):
    """Rounds of generation after the first `images_per_class`, to each class as it needs them.

    `quota`: the classes short of `filter.per_class` images passing CF get their shortfall over the
    pass rate they have shown, until every class has its quota or reaches `max_per_class`.
    `adaptive`: a fixed budget (`budget_per_class` on average, the first round included) is spent
    over `max_rounds` rounds, each split over the classes by their weakness. Its `signal`:
    `confidence` (zero-shot): 1 - the mean CLIP confidence in their own class of the images they have
    so far; `fewshot`: 1 - the mean probability of their class on their `shots` real shots (the
    fewshot stage's M-shot draw) given by a head trained on the synthetic images kept so far.
    """

    policy: Literal["quota", "adaptive"] = "quota"
    max_per_class: int = Field(gt=0, description="a class never gets more generated images than this")
    min_pass_rate: float = Field(
        0.1, gt=0, le=1, description="quota: the pass rate assumed for a class that has shown a lower one"
    )
    max_rounds: int = Field(5, gt=0, description="top-up rounds at most, after the first (adaptive: exactly)")
    budget_per_class: int | None = Field(
        None, gt=0, description="adaptive: images generated per class on average over all rounds"
    )
    signal: Annotated[Literal["confidence", "fewshot"], Added("confidence")] = Field(
        "confidence",
        description="adaptive: the weakness a round splits by: CLIP's confidence (zero-shot) or the error on "
        "the real shots (fewshot)",
    )
    shots: Annotated[int | None, Added(None)] = Field(
        None, gt=0, description="signal fewshot: the real shots per class (M) the weakness is measured on"
    )

    @model_validator(mode="after")
    def _budget_for_adaptive_only(self) -> TopUpConfig:
        if (self.policy == "adaptive") != (self.budget_per_class is not None):
            raise ValueError("top_up.budget_per_class is set for, and only for, policy: adaptive")
        if self.signal == "fewshot" and self.policy != "adaptive":
            raise ValueError("top_up.signal fewshot is a signal of policy: adaptive")
        if (self.signal == "fewshot") != (self.shots is not None):
            raise ValueError("top_up.shots is set for, and only for, signal: fewshot")
        if self.budget_per_class is not None and self.budget_per_class > self.max_per_class:
            raise ValueError(
                f"top_up.budget_per_class ({self.budget_per_class}) is above max_per_class ({self.max_per_class})"
            )
        return self


class ShardsConfig(Section):
    images_per_class: int = Field(2000, gt=0, description="paper: 2000 for B and LE; with top_up: the first round")
    shard_size: int = Field(1000, gt=0, description="images per WebDataset tar")
    top_up: Annotated[TopUpConfig | None, Added(None)] = Field(
        None, description="quota mode (null: the paper's fixed images per class)"
    )

    @model_validator(mode="after")
    def _first_round_fits(self) -> ShardsConfig:
        top_up = self.top_up
        if top_up is not None and top_up.max_per_class < self.images_per_class:
            raise ValueError(
                f"top_up.max_per_class ({top_up.max_per_class}) is below images_per_class "
                f"({self.images_per_class}), the first round"
            )
        if (
            top_up is not None
            and top_up.budget_per_class is not None
            and top_up.budget_per_class <= self.images_per_class
        ):
            raise ValueError(
                f"top_up.budget_per_class ({top_up.budget_per_class}) leaves nothing for top-up rounds after "
                f"images_per_class ({self.images_per_class})"
            )
        return self


class ClipConfig(Section):
    """The CLIP model used to score, filter and (frozen) to encode images for training."""

    model: str = Field(
        "tiny",
        description="open_clip name (e.g. RN50), 'local-dir:PATH', 'tiny' (ViT), 'tiny-rn' (ResNet with BatchNorm) "
        "or 'loadtest' (no model: load tests)",
    )
    pretrained: str | None = Field(None, description="open_clip pretrained tag or checkpoint file")
    templates: list[str] | None = Field(None, description="zero-shot templates; default: the label space's")
    quick_gelu: Annotated[bool | None, ByPart("clip.quick_gelu")] = Field(
        None,
        description="QuickGELU activations; default: as the pretrained weights were trained (OpenAI's: on)",
    )
    batch_size: Annotated[int, Runtime] = Field(256, gt=0)
    device: Annotated[str, Runtime] = "auto"
    workers: Annotated[int | None, Runtime] = Field(
        None, ge=0, description="threads that decode and preprocess images while CLIP runs; default: cores, ≤ 8"
    )
    processes: Annotated[bool | None, Runtime] = Field(
        None,
        description="the workers are processes (each with its own GIL), not threads; default: with more than 4 "
        "workers (a GPU node), unless in a daemonic process (a Dask worker's)",
    )
    seconds_per_batch: Annotated[float, Runtime] = Field(
        0.0, ge=0, description="loadtest: the model time it simulates per batch"
    )
    dtype: Annotated[Literal["auto", "float32", "float16", "bfloat16"], Added("auto")] = Field(
        "auto", description="autocast dtype; auto: float16 on CUDA, float32 on CPU"
    )
    compile: Annotated[bool, Runtime] = Field(False, description="torch.compile CLIP's image tower")

    @property
    def uses_quick_gelu(self) -> bool:
        """`quick_gelu`, else on for OpenAI's weights (`pretrained: openai`): they were trained with it,
        and open_clip builds a plain name such as `RN50` with GELU. (Other checkpoints trained with
        QuickGELU have `-quickgelu` names in open_clip, which set it themselves.)"""
        return self.quick_gelu if self.quick_gelu is not None else self.pretrained == "openai"

    _templates = field_validator("templates")(lambda value, info: _check_templates(value, f"clip.{info.field_name}"))


class FilterConfig(Section):
    """CF: keep synthetic images whose CLIP confidence for their own class is at least `threshold`."""

    clip_filter: bool = True
    threshold: float | None = Field(None, ge=0, le=1, description="default 1/N for N classes (paper)")
    templates: Annotated[list[str] | None, ByPart("filter.templates")] = Field(
        None, description="CF's prompts (averaged); default: the label space's one"
    )
    per_class: Annotated[int | None, Added(None)] = Field(
        800,
        gt=0,
        description="images kept per class: drawn among those passing, or the most confident when fewer "
        "pass (paper: 800); null keeps every passing image",
    )
    first_per_class: Annotated[int | None, Added(None)] = Field(
        None,
        gt=0,
        description="use only the first this many generated images of each class (in shard order), before CF: "
        "data-amount curves from one generation; null: every image",
    )
    near_duplicates: Annotated[float | None, Added(None)] = Field(
        None,
        gt=0,
        le=1,
        description="after CF: of each group of a class's kept images whose CLIP features are at least this "
        "cosine-similar, keep only the first (in shard order); null: off",
    )

    _templates = field_validator("templates")(lambda value, info: _check_templates(value, f"filter.{info.field_name}"))
