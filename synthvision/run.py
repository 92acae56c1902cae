"""A run: one config bound to its output storage. What a run *is*: its config and label space, its
storage and stage hashes, the answers to "committed?" (`commits`), its prompt table and shard plan,
the models its stages share (loaded lazily, once per process), and the output's writer lock.

What a run *does* is in `synthvision/stages/`, one file per stage; each stage function takes a Run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthvision.core.config import RunConfig
from synthvision.core.errors import ConfigError, DataError
from synthvision.core.heads import filter_templates, zero_shot_templates
from synthvision.core.label_spaces import LabelSpace, load_label_space
from synthvision.core.learning_config import RealGuidanceConfig
from synthvision.core.memo import once_per_config
from synthvision.core.paths import PATHS, fields_set, is_url, relative_to_config
from synthvision.core.planning import ShardPlan, ShardSpec, check_shard_size, plan_from_prompts, shard_name
from synthvision.core.prompts import Prompt
from synthvision.core.stage_table import STAGES, enabled, stage_hashes
from synthvision.methods.filtering import ZeroShotHead
from synthvision.storage.commits import Commits
from synthvision.storage.lock import holder as lock_holder
from synthvision.storage.lock import locked_output
from synthvision.storage.prompt_table import PROMPTS_FILE
from synthvision.storage.store import Storage
from synthvision.storage.top_ups import TopUpRound, read_rounds

if TYPE_CHECKING:
    from synthvision.models.clip import ClipModel

RUN_RECORD = "run.json"


@dataclass(frozen=True)
class StageStatus:
    stage: str
    planned: int  # shards, or 1 for a stage that runs once
    committed: int
    images_planned: int | None = None  # shard stages: images in the plan
    images_done: int | None = None  # images in the committed shards
    busy_s: float = 0.0  # compute time: the committed shards' manifests' timings, a whole stage's report's busy_s

    @property
    def missing(self) -> int:
        return self.planned - self.committed

    @property
    def rate(self) -> float | None:
        """Images per second of one worker, from the committed shards' timings."""
        return self.images_done / self.busy_s if self.images_done and self.busy_s > 0 else None

    def eta_s(self, workers: int = 1) -> float | None:
        """Seconds left for `workers` workers at that rate (0 when done, None before any timing)."""
        if self.images_planned is None or self.images_done is None:
            return 0.0 if self.missing == 0 else None
        left = max(self.images_planned - self.images_done, 0)
        if left == 0:
            return 0.0
        return left / (self.rate * workers) if self.rate else None


def shared_folders(config: RunConfig, hashes: dict[str, str]) -> dict[str, str]:
    """Where each stage's outputs live when the config shares them (`shared_stages`): under
    `<shared_stages>/<stage>/<stage hash>/`, so that runs agreeing on a stage's hash (which covers
    every stage upstream of it) find one copy; {} when it does not."""
    if config.shared_stages is None:
        return {}
    root = config.shared_stages.rstrip("/")
    return {row.output.rstrip("/"): f"{root}/{row.name}/{hashes[row.name]}/{row.output.rstrip('/')}" for row in STAGES}


class Run:
    def __init__(self, config: RunConfig):
        self.config = config
        self.label_space: LabelSpace = load_label_space(config.label_space)
        self.hashes = stage_hashes(config)
        self.storage = Storage(config.output, config.storage_options, shared_folders(config, self.hashes))
        self.commits = Commits(self.storage, self.hashes)
        self._lock = threading.Lock()
        shards = config.shards
        self.first_round_shards = check_shard_size(
            self.label_space.num_classes, shards.images_per_class, shards.shard_size
        )
        self._check_sources()

    def _check_sources(self) -> None:
        """Fail before any work on a model or test set that cannot be found (nothing is loaded here)."""
        from synthvision.models.clip import open_clip_name
        from synthvision.models.weights import resolve_model_source

        config = self.config
        if config.generator.backend == "diffusers":
            resolve_model_source(config.generator.model, "generator.model")
        if config.prompts.strategy == "language_enhancement" and config.prompts.sentence_model.model != "tiny":
            resolve_model_source(config.prompts.sentence_model.model, "prompts.sentence_model.model")
        open_clip_name(config.clip)
        for field, node, leaf in fields_set(config.model_dump(), PATHS):
            path = node[leaf]
            if path and not is_url(path) and not Path(path).exists():
                raise DataError(f"{field} {path} does not exist")
        if config.evaluation.demo_test_set is not None:
            from synthvision.datasets.colour_demo import check_colour_names

            check_colour_names(self.label_space)

    def shown(self, path: str | None) -> str | None:
        """A local path as reports name it: relative to the config's folder, never this machine's
        absolute path (see `core.paths.relative_to_config`)."""
        return None if path is None else relative_to_config(path, self.config.base_dir)

    def section(self, name: str) -> Any:
        """An optional config section (fewshot, pretrain, ...); an error naming it when the config has none."""
        section = getattr(self.config, name)
        if section is None:
            raise ConfigError(f"{name}: the config has no {name} section")
        return section

    # -- the prompt table and the shard plan ------------------------------------------------------
    @cached_property
    def prompts(self) -> list[Prompt]:
        prompts = self.commits.prompts()
        if prompts is None:
            raise DataError(
                f"{self.storage.url_of(PROMPTS_FILE)} is missing or from another config: run the prompts stage first"
            )
        return prompts

    @cached_property
    def top_ups(self) -> tuple[TopUpRound, ...]:
        """Quota mode's top-up rounds recorded so far (() without quota mode); see `refresh_plan`."""
        if self.config.shards.top_up is None:
            return ()
        return read_rounds(self.storage, self.hashes["generate"])

    @cached_property
    def plan(self) -> ShardPlan:
        """The shards of the first round and of every top-up round recorded so far."""
        return plan_from_prompts(
            [prompt.class_id for prompt in self.prompts],
            self.label_space.num_classes,
            self.config.shards.images_per_class,
            self.config.shards.shard_size,
            self.config.seed,
            self.guidance.shots if self.guidance else 0,
            tuple(top_up.images for top_up in self.top_ups),
        )

    def refresh_plan(self) -> None:
        """Read the recorded top-up rounds again (one was recorded since, here or elsewhere)."""
        with self._lock:
            self.__dict__.pop("top_ups", None)
            self.__dict__.pop("plan", None)

    def shard(self, index: int) -> ShardSpec:
        """Shard `index` of the plan, which a top-up round recorded after this process read it may hold."""
        if index >= self.plan.num_shards and self.config.shards.top_up is not None:
            self.refresh_plan()
        return self.plan.shard(index)

    @property
    def num_shards(self) -> int:
        """Shards planned, top-up rounds included (no prompt table needed)."""
        size = self.config.shards.shard_size
        return self.first_round_shards + sum(-(-sum(top_up.images) // size) for top_up in self.top_ups)

    @property
    def num_images(self) -> int:
        """Images planned, top-up rounds included."""
        first = self.label_space.num_classes * self.config.shards.images_per_class
        return first + sum(sum(top_up.images) for top_up in self.top_ups)

    # -- inputs and models its stages share, loaded once per process -----------------------------
    @cached_property
    def models(self) -> dict[str, str]:
        """The models' names that its samples and manifests record, the same on every machine (hub id
        and commit, or a path relative to the config and a digest of the weights: `models.lineage`)."""
        from synthvision.models.lineage import clip_ref, generator_ref

        base = self.config.base_dir
        return {"generator": generator_ref(self.config.generator, base), "clip": clip_ref(self.config.clip, base)}

    @property
    def guidance(self) -> RealGuidanceConfig | None:
        """The real-guidance settings when generation starts from real shots, else None."""
        fewshot = self.config.fewshot
        return fewshot.real_guidance if fewshot is not None and fewshot.real_guidance.enabled else None

    def generator(self):
        """The text-to-image generator (one per process: shard tasks of a run share it)."""
        from synthvision.models.generators import load_generator

        return load_generator(self.config.generator)

    def clip_and_head(self) -> tuple[ClipModel, ZeroShotHead]:
        """The CLIP model and its zero-shot head for this label space, built once per process."""
        return self._clip_and_heads()[:2]

    def filter_head(self) -> ZeroShotHead:
        """The CLIP filter's head (its own prompts: see `core.heads`), built once per process."""
        return self._clip_and_heads()[2]

    def _clip_and_heads(self) -> tuple[ClipModel, ZeroShotHead, ZeroShotHead]:
        from synthvision.models.clip import load_clip

        with self._lock:
            if not hasattr(self, "_heads"):
                clip, classes = load_clip(self.config.clip), self.label_space.classes
                zero_shot, cf = zero_shot_templates(self.config), filter_templates(self.config)
                head = ZeroShotHead(clip.text_classifier(classes, zero_shot), clip.logit_scale)
                cf_head = head if cf == zero_shot else ZeroShotHead(clip.text_classifier(classes, cf), clip.logit_scale)
                self._heads = (clip, head, cf_head)
            return self._heads

    def test_set_url(self) -> str | None:
        """The real test set: `evaluation.test_set`, or the colour demo set (written on first use)."""
        evaluation = self.config.evaluation
        if evaluation.demo_test_set is not None:
            from synthvision.datasets.colour_demo import write_colour_test_set

            demo = evaluation.demo_test_set
            return write_colour_test_set(
                self.storage, "demo_test_set", self.label_space, demo.per_class, demo.size, self.config.seed
            )
        return evaluation.test_set

    # -- bookkeeping ----------------------------------------------------------------------------
    @contextmanager
    def writing(self, holder: dict[str, Any] | None = None) -> Iterator[dict[str, Any] | None]:
        """Hold the output's lock while the block writes, after checking (and recording in run.json)
        that this config may write here (see `output_lock` and `_record_version`), and clearing the
        temporary files a killed run left. `holder` names this run in the lock (for `status` and for
        a run that takes over after this one dies); yields the lock record of the dead run this one
        took the output over from, if any."""
        orchestration = self.config.orchestration
        with locked_output(self.storage, orchestration.lock_ttl_s, orchestration.lock_wait_s, holder) as lock:
            if lock is not None:
                self._record_version()
                self.storage.sweep_temporaries()
            yield None if lock is None else lock.taken_over

    def _record_version(self) -> None:
        """Refuse to mix data of two configs in one output, unless this run is a new version.

        The data stages (prompts, generate, score) name their shards by index, so a changed config
        would overwrite an older config's shards one by one. `run.json` holds the config whose data the
        output holds; a run whose data-stage hashes differ stops with the fields that changed, or,
        with `orchestration.new_version`, archives that record under `versions/` and takes over."""
        previous = self.storage.read_json(RUN_RECORD)
        version = 1
        if previous is not None:
            version = previous.get("version", 1)
            changed = [
                row.name
                for row in STAGES
                if row.versioned and previous["config_hashes"].get(row.name) != self.hashes[row.name]
            ]
            if changed:
                if not self.config.orchestration.new_version:
                    fields = _changed_fields(previous["config"], self.config.model_dump(mode="json"))
                    raise ConfigError(
                        f"output {self.storage.url} holds the {', '.join(changed)} data of another config "
                        f"(changed: {'; '.join(fields[:4]) or 'the label space file'}). Refusing to mix them: "
                        "choose another output, or pass --new-version (orchestration.new_version) to replace that data"
                    )
                self.storage.write_bytes(
                    f"versions/v{version:04d}.json", json.dumps(previous, indent=1).encode("utf-8")
                )
                version += 1
        record = {
            "runs": (previous or {}).get("runs", 0) + 1,  # commands that wrote here, this one included
            "version": version,
            "config": self.config.model_dump(mode="json"),
            "config_hashes": self.hashes,
            "classes": list(self.label_space.classes),
        }
        self.storage.write_bytes(RUN_RECORD, json.dumps(record, indent=1).encode("utf-8"))

    def earlier_runs(self) -> int:
        """How many commands wrote to this output before (0 for a new output), from its run record."""
        record = self.storage.read_json(RUN_RECORD)
        return 0 if record is None else record.get("runs", 1)

    def status(self) -> list[StageStatus]:
        """Planned and committed counts for every stage the config enables, read from storage alone
        (no model, no Prefect; see `storage.commits` for what counts as committed). Shard manifests
        come from one listing per stage (specs are a pure function of the config, so their hashes are
        not recomputed); scores count when they were computed from exactly the committed tar."""
        self.refresh_plan()  # top-up rounds recorded since this object last read them
        planned = {shard_name(index) for index in range(self.num_shards)}
        prompts = self.commits.prompts()
        shards = scores = {}
        if prompts is not None:
            shards = {name: m for name, m in self.commits.shards("generate").items() if name in planned}
            scores = self.commits.shards("score")
        done = {
            "generate": list(shards.values()),
            "score": [
                scores[name] for name, m in shards.items() if name in scores and scores[name].spec_hash == m.sha256
            ],
        }
        images_planned = self.num_images
        rows = []
        for row in enabled(self.config):
            if row.name in done:
                manifests = done[row.name]
                rows.append(
                    StageStatus(
                        row.name,
                        self.num_shards,
                        len(manifests),
                        images_planned,
                        sum(m.count for m in manifests),
                        sum(m.timings.get("total_s", 0.0) for m in manifests),
                    )
                )
            elif row.name == "prompts":
                rows.append(StageStatus(row.name, 1, int(prompts is not None)))
            else:
                record = self.commits.report_record(row.name)
                busy = 0.0 if record is None else float(record.get("busy_s", 0.0))
                rows.append(StageStatus(row.name, 1, int(record is not None), busy_s=busy))
        return rows

    def holder(self) -> dict[str, Any] | None:
        """Who writes this output now: the lock's record (see `storage.lock.holder`), or None."""
        return lock_holder(self.storage, self.config.orchestration.lock_ttl_s)


# top-level fields that say where and how a run works, never what its data is
WHERE_NOT_WHAT = ("orchestration", "output", "run_name", "storage_options", "base_dir", "shared_stages")


def _changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`field: old -> new` for each leaf that differs between two config dumps (the fields that
    change no data aside)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for key in sorted(set(old) | set(new))
            if not (
                prefix == ""
                and key in ("orchestration", "output", "run_name", "storage_options", "base_dir", "shared_stages")
            )
            for change in _changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


@once_per_config
def open_run(config: RunConfig) -> Run:
    """The process-wide `Run` for a config: shard tasks share its prompt table and loaded models.
    (A named function, not `once_per_config(Run)`, so that worker processes import it by name.)"""
    return Run(config)
