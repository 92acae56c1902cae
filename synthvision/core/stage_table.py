"""The table of stages: what each stage is, in one place.

A row names the stage, the stages whose outputs it reads, the config fields that change its output,
where that output lives, and whether it is committed shard by shard or once per run. The stage
hashes, `status`, the run record, the CLI and the flows' deployments are derived from these rows (or
checked against them by tests), so a new stage is one row here plus the code that computes it.

Pure: no torch, fsspec or PIL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from synthvision.core.config import RunConfig
from synthvision.core.hashing import stable_hash
from synthvision.core.heads import filter_templates, single_head_templates, zero_shot_templates
from synthvision.core.label_spaces import BUILTIN_LABEL_SPACES, load_label_space
from synthvision.core.paths import DATA_SETS, PATHS, REFERENCES, content_id, fields_set, relative_to_config
from synthvision.core.section import hashed

ABSENT = object()  # a part's value that leaves its key out of the hash


def portable(config: RunConfig) -> RunConfig:
    """The config as stage hashes see it: real data sets by their content (`content_id`), other local
    paths relative to its file's folder (`base_dir`), so that a checkout moved elsewhere, or a run
    started from another directory, keeps its hashes. (The label space is hashed by its class names.)"""
    data = config.model_dump(mode="python")
    for _, node, leaf in fields_set(data, DATA_SETS):
        node[leaf] = content_id(node[leaf])
    # the other paths relative to the file; the label space is hashed by its class names, read from where it is
    relative = tuple(name for name in (*PATHS, *REFERENCES) if name not in (*DATA_SETS, "label_space"))
    for _, node, leaf in fields_set(data, relative):
        node[leaf] = relative_to_config(node[leaf], config.base_dir)
    return RunConfig.model_validate(data)


@dataclass(frozen=True)
class Part:
    """One entry of a stage hash: `key` and the config value it stands for (ABSENT: no entry)."""

    key: str
    value: Callable[[RunConfig], Any]


def section(name: str) -> Part:
    """A whole config section as its fields' declarations say it is hashed (`core/section.hashed`:
    less runtime fields, fields at their `Added` value and those a `ByPart` part hashes); a missing
    optional section hashes as None."""

    def value(config: RunConfig) -> Any:
        found = getattr(config, name)
        return found if found is None or not isinstance(found, BaseModel) else hashed(found)

    return Part(name, value)


# what B prompts hashed with for LE's settings, which cannot change them: kept constant, so that B runs
# keep their hashes whatever LE's defaults become
B_WITH_LE_SETTINGS = {
    "sentences_per_class": 200,
    "sentence_model": {"model": "tiny", "input_template": "{}", "max_new_tokens": 32, "top_p": 0.9, "temperature": 1.0},
}


def _prompts(config: RunConfig) -> Any:
    """The prompts section less the model its strategy does not use (B uses neither)."""
    prompts = config.prompts
    if prompts.strategy == "basic":
        return {"strategy": "basic", "template": prompts.template, **B_WITH_LE_SETTINGS}
    view = hashed(prompts)
    del view["sentence_model" if prompts.strategy == "llm" else "llm"]
    return view


def _label_space(config: RunConfig) -> Any:
    """A built-in by its name; a file by its class names, in order (their positions are the class ids):
    a file edited in place is a new label space, and the same names under another path are not."""
    if config.label_space in BUILTIN_LABEL_SPACES:
        return config.label_space
    classes = load_label_space(config.label_space).classes
    return {"classes_sha256": hashlib.sha256("\n".join(classes).encode("utf-8")).hexdigest()}


def _real_guidance(config: RunConfig) -> Any:
    fewshot = config.fewshot
    if fewshot is None or not fewshot.real_guidance.enabled:
        return ABSENT  # so that generating without real guidance hashes as it always did
    return {"train_set": fewshot.train_set, **fewshot.real_guidance.model_dump()}


def _templates(resolve: Callable[[RunConfig], list[str]]) -> Callable[[RunConfig], Any]:
    """A head's templates, where they differ from the single head's of before (else no entry)."""
    return lambda config: ABSENT if resolve(config) == single_head_templates(config) else resolve(config)


def _real_pool(config: RunConfig) -> Any:
    """The few-shot pool: the real images quality compares with when there is no test set."""
    return ABSENT if config.fewshot is None else [config.fewshot.train_set, config.fewshot.format]


def _upsample_sampler(config: RunConfig) -> Any:
    """GLIDE's upsampler sampler, where it runs and is not the ancestral one of runs before the switch."""
    generator = config.generator
    runs = generator.backend == "glide" and generator.glide.upsample
    return generator.glide.upsample_sampler if runs and generator.glide.upsample_sampler != "ancestral" else ABSENT


def _image_encoding(config: RunConfig) -> Any:
    """The encoder's settings that the image format uses, where they differ from what every shard was
    encoded with before they were fields (png at zlib level 6, jpg at quality 95)."""
    generator = config.generator
    if generator.image_format == "png" and generator.png_compress_level != 6:
        return {"png_compress_level": generator.png_compress_level}
    if generator.image_format in ("jpg", "webp") and (generator.image_format, generator.image_quality) != ("jpg", 95):
        return {"image_quality": generator.image_quality}
    return ABSENT


def _quick_gelu(config: RunConfig) -> Any:
    """CLIP's activation, where it is QuickGELU (else no entry: the hash of runs before the switch)."""
    return True if config.clip.uses_quick_gelu else ABSENT


SCORE_PARTS = (
    section("clip"),
    Part("clip.quick_gelu", _quick_gelu),
    Part("clip.zero_shot_templates", _templates(zero_shot_templates)),
    Part("filter", lambda c: {"threshold": c.filter.threshold}),
    Part("filter.templates", _templates(filter_templates)),
)


# the fewshot settings the few-shot signal's head is trained with (`syn_only`) and its shots drawn by
FEWSHOT_SIGNAL_FIELDS = (
    "train_set",
    "format",
    "synthetic_batch_size",
    "phase_lr",
    "epochs",
    "weight_decay",
    "synthetic_loss",
    "temperature",
    "label_smoothing",
    "hard_pseudo_labels",
)


def _top_up_scoring(config: RunConfig) -> Any:
    """Top-up rounds follow the scores (what CF passed, CLIP's confidence): the shards they make depend
    on the scoring config, and the quota's on the quota (`filter.per_class`) too; the few-shot
    signal's on what CF keeps and the few-shot settings its head is trained with (else no entry:
    generation as it always hashed)."""
    top_up = config.shards.top_up
    if top_up is None:
        return ABSENT
    scoring = {part.key: part.value(config) for part in SCORE_PARTS}
    quota = {"quota": config.filter.per_class} if top_up.policy == "quota" else {}
    signal = {}
    if top_up.signal == "fewshot" and config.fewshot is not None:
        fewshot = config.fewshot.model_dump(mode="json")
        signal = {
            "filter": hashed(config.filter),
            "fewshot": {name: fewshot[name] for name in FEWSHOT_SIGNAL_FIELDS},
        }
    return {key: value for key, value in scoring.items() if value is not ABSENT} | quota | signal


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]  # the stages whose outputs this one reads
    parts: tuple[Part, ...]  # config that changes this stage's output (its upstream's comes with it)
    output: str  # under the run's output: a folder ending in "/" or a file
    per_shard: bool  # committed shard by shard (else once per run)
    optional: str | None = None  # the config section it needs; None: every run has it
    summary: str = ""
    work: str = ""  # the function of its file (`stages/<name>.py`) that computes and commits it; "": its name

    @property
    def description(self) -> str:
        """Its summary as a sentence: its command's help, its deployments' description."""
        return f"{self.summary[0].upper()}{self.summary[1:]}."

    @property
    def work_function(self) -> str:
        return self.work or self.name

    @property
    def folder(self) -> str:
        """The folder its outputs are written under (the prompt table: the output's root)."""
        return self.output.rstrip("/") if self.output.endswith("/") else ""

    @property
    def report_file(self) -> str:
        """A whole-run stage's report, written last: its presence with this config's hash commits the stage."""
        return f"{self.folder}/report.json"

    @property
    def versioned(self) -> bool:
        """Its outputs are named by position (prompt table, shard index): a changed config would
        overwrite another config's data in place, so `run.json` guards them."""
        return self.name == "prompts" or self.per_shard


STAGES: tuple[Stage, ...] = (
    Stage(
        "prompts",
        (),
        (Part("label_space", _label_space), section("seed"), Part("prompts", _prompts)),
        "prompts.parquet",
        per_shard=False,
        summary="the prompt table: prompts per class (B, LE)",
        work="expand",
    ),
    Stage(
        "generate",
        ("prompts",),
        (
            section("generator"),
            Part("generator.glide.upsample_sampler", _upsample_sampler),
            Part("generator.image_encoding", _image_encoding),
            section("shards"),
            Part("shards.top_up.scoring", _top_up_scoring),
            Part("real_guidance", _real_guidance),
        ),
        "shards/",
        per_shard=True,
        summary="synthetic images, one WebDataset tar per shard",
    ),
    Stage(
        # scores record pass/fail at the threshold; whether to drop the failures is the trainer's choice,
        # so the no-CF ablation reuses the scores
        "score",
        ("generate",),
        SCORE_PARTS,
        "scores/",
        per_shard=True,
        summary="CLIP features, zero-shot logits and the CF verdict per image",
    ),
    Stage(
        "train",
        ("score",),
        (section("filter"), section("evaluation"), section("training")),
        "train/",
        per_shard=False,
        summary="classifier tuning (CT) on the scored images; top-1 on the test set",
    ),
    Stage(
        "fewshot",
        ("score",),
        (section("filter"), section("evaluation"), section("fewshot")),
        "fewshot/",
        per_shard=False,
        optional="fewshot",
        summary="few-shot CT per shot count and strategy",
        work="few_shot",
    ),
    Stage(
        "quality",
        ("score",),
        (
            section("filter"),
            section("evaluation"),
            section("quality"),
            Part("fewshot.train_set", _real_pool),  # the real images compared with when there is no test set
        ),
        "quality/",
        per_shard=False,
        optional="quality",
        summary="per class: CF pass rate, image and prompt diversity, near-duplicates, distance to real",
    ),
    Stage(
        "pretrain",
        ("generate",),
        (section("pretrain"),),
        "pretrain/",
        per_shard=False,
        optional="pretrain",
        summary="a ResNet pre-trained on the shards (supervised or MoCo v2)",
    ),
    Stage(
        "transfer",
        ("pretrain",),
        (section("transfer"),),
        "transfer/",
        per_shard=False,
        optional="transfer",
        summary="the pre-trained backbone and a random init fine-tuned on real data",
    ),
    Stage(
        "scratch",
        ("generate",),
        (section("evaluation"), section("scratch")),
        "scratch/",
        per_shard=False,
        optional="scratch",
        summary="ResNets from random init on synthetic and on k real images per class",
    ),
)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r} (stages: {', '.join(NAMES)})") from None


def lineage(name: str) -> list[Stage]:
    """The stage and every stage upstream of it, upstream first (each once)."""
    order: list[Stage] = []

    def visit(current: Stage) -> None:
        for parent in current.upstream:
            visit(BY_NAME[parent])
        if current not in order:
            order.append(current)

    visit(stage(name))
    return order


def stage_hash(config: RunConfig, name: str) -> str:
    """Hash of everything that changes `name`'s outputs, its upstream stages included; a part a stage
    names again (train's whole `filter` over score's threshold) is taken from the later stage."""
    return _hash(portable(config), name)


def stage_hashes(config: RunConfig) -> dict[str, str]:
    """Every stage's hash (the config's data sets read once)."""
    seen = portable(config)
    return {row.name: _hash(seen, row.name) for row in STAGES}


def _hash(config: RunConfig, name: str) -> str:
    parts: dict[str, Any] = {}
    for current in lineage(name):
        for part in current.parts:
            value = part.value(config)
            if value is not ABSENT:
                parts[part.key] = value
    return stable_hash({"stage": name, **parts})


def enabled(config: RunConfig) -> list[Stage]:
    """The stages this config can run: every stage whose optional section it has."""
    return [s for s in STAGES if s.optional is None or getattr(config, s.optional) is not None]
