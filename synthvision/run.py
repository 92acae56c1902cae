"""A run: one config bound to its output storage, with one method per unit of work.

Prefect tasks are thin wrappers over these methods (one call per shard); the CLI's `status` uses them
too. Everything here is resumable: each method first asks storage whether its output is committed.
Models are loaded lazily, once per process, and only when some shard actually needs them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from safetensors.torch import save as save_safetensors

from synthvision import failpoints
from synthvision.config import RealGuidanceConfig, RunConfig
from synthvision.devices import resolve_device
from synthvision.errors import ConfigError, DataError
from synthvision.generation import SHARDS_DIR, Guidance, Reference, generate_shard, shard_tar_path
from synthvision.label_spaces import LabelSpace, load_label_space
from synthvision.manifest import Manifest, manifest_path
from synthvision.memo import once_per_config
from synthvision.output_lock import locked_output
from synthvision.planning import ShardPlan, check_shard_size, plan_from_prompts, shard_name
from synthvision.prompt_table import PROMPTS_FILE, expand_prompts, read_prompts, write_prompts
from synthvision.prompts import Prompt
from synthvision.scoring import SCORES_DIR, CorruptShard, ZeroShotHead, read_scores, score_shard
from synthvision.stages import STAGES, enabled, stage, stage_hash
from synthvision.storage import Storage

TRAIN_DIR = stage("train").folder
FEWSHOT_DIR = stage("fewshot").folder
RUN_RECORD = "run.json"


@dataclass(frozen=True)
class SyntheticData:
    features: np.ndarray
    labels: np.ndarray
    teacher: np.ndarray  # CLIP zero-shot logits: soft targets for SCE
    keys: list[str]  # sample keys, to find the images in the shards
    scored: int  # synthetic images scored
    passed: int  # of those, passing the CLIP filter


@dataclass(frozen=True)
class StageStatus:
    stage: str
    planned: int
    committed: int

    @property
    def missing(self) -> int:
        return self.planned - self.committed


class Run:
    def __init__(self, config: RunConfig):
        self.config = config
        self.label_space: LabelSpace = load_label_space(config.label_space)
        self.storage = Storage(config.output, config.storage_options)
        self.hashes = {row.name: stage_hash(config, row.name) for row in STAGES}
        self._lock = threading.Lock()
        self._shots: list[list[Reference]] | None = None
        shards = config.shards
        self.num_shards = check_shard_size(self.label_space.num_classes, shards.images_per_class, shards.shard_size)
        self._check_sources()

    def _check_sources(self) -> None:
        """Fail before any work on a model or test set that cannot be found (nothing is loaded here)."""
        from synthvision.clip_model import open_clip_name
        from synthvision.weights import resolve_model_source

        config = self.config
        if config.generator.backend == "diffusers":
            resolve_model_source(config.generator.model, "generator.model")
        if config.prompts.strategy == "language_enhancement" and config.prompts.sentence_model.model != "tiny":
            resolve_model_source(config.prompts.sentence_model.model, "prompts.sentence_model.model")
        open_clip_name(config.clip)
        local_sets = {
            "evaluation.test_set": config.evaluation.test_set,
            "fewshot.train_set": config.fewshot and config.fewshot.train_set,
            "transfer.train_set": config.transfer and config.transfer.train_set,
            "transfer.test_set": config.transfer and config.transfer.test_set,
            "scratch.real_train_set": config.scratch and config.scratch.real_train_set,
            "pretrain.init_backbone": config.pretrain and config.pretrain.init_backbone,
        }
        for field, url in local_sets.items():
            if url and "://" not in url and not Path(url).exists():
                raise DataError(f"{field} {url} does not exist")

    # -- prompts --------------------------------------------------------------------------------
    def ensure_prompts(self) -> tuple[list[Prompt], bool]:
        """The prompt table, expanding and committing it first if needed; (prompts, expanded now)."""
        existing = read_prompts(self.storage, self.hashes["prompts"])
        if existing is not None:
            return existing, False
        prompts = expand_prompts(self.config, self.label_space)
        write_prompts(self.storage, prompts, self.hashes["prompts"])
        return prompts, True

    @cached_property
    def prompts(self) -> list[Prompt]:
        prompts = read_prompts(self.storage, self.hashes["prompts"])
        if prompts is None:
            raise DataError(
                f"{self.storage.url_of(PROMPTS_FILE)} is missing or from another config: run the prompts stage first"
            )
        return prompts

    @cached_property
    def plan(self) -> ShardPlan:
        return plan_from_prompts(
            [prompt.class_id for prompt in self.prompts],
            self.label_space.num_classes,
            self.config.shards.images_per_class,
            self.config.shards.shard_size,
            self.config.seed,
            self.guidance.shots if self.guidance else 0,
        )

    @property
    def guidance(self) -> RealGuidanceConfig | None:
        """The real-guidance settings when generation starts from real shots, else None."""
        fewshot = self.config.fewshot
        return fewshot.real_guidance if fewshot is not None and fewshot.real_guidance.enabled else None

    def guidance_shots(self) -> list[list[Reference]]:
        """Per class, its M real shots (the same ones the few-shot stage trains on), loaded once."""
        with self._lock:
            if self._shots is None:
                from synthvision.evaluation import iter_labelled
                from synthvision.fewshot import sample_shots

                fewshot = self.config.fewshot
                pool = list(
                    iter_labelled(
                        fewshot.train_set,
                        fewshot.format,
                        self.label_space,
                        self.config.storage_options,
                        field="fewshot.train_set",
                    )
                )
                chosen = sample_shots(
                    np.array([label for _, label, _ in pool]),
                    self.guidance.shots,
                    self.label_space.classes,
                    self.config.seed,
                )
                self._shots = [[] for _ in self.label_space.classes]
                for index in chosen:
                    image, label, digest = pool[index]
                    self._shots[label].append(Reference(image, digest))
            return self._shots

    # -- generation -----------------------------------------------------------------------------
    def generate(self, shard_index: int) -> tuple[Manifest, bool]:
        from synthvision.generators import load_generator

        guidance = self.guidance
        return generate_shard(
            self.plan.shard(shard_index),
            self.prompts,
            lambda: load_generator(self.config.generator),
            self.storage,
            self.hashes["generate"],
            self.config.generator.image_format,
            guidance=None if guidance is None else Guidance(self.guidance_shots, guidance.strength),
        )

    def committed_shards(self) -> list[Manifest]:
        """Every shard's manifest; an error naming the first missing shard if any is not committed."""
        return self._every_shard(self.committed_shard, "are not generated", "generate")

    def _every_shard(self, committed: Callable[[int], Manifest | None], problem: str, stage: str) -> list[Manifest]:
        manifests = [committed(index) for index in range(self.plan.num_shards)]
        missing = [self.plan.shard(i).name for i, m in enumerate(manifests) if m is None]
        if missing:
            raise DataError(f"{len(missing)} shard(s) {problem} (first: {missing[0]}): run the {stage} stage first")
        return manifests

    def committed_shard(self, shard_index: int) -> Manifest | None:
        spec = self.plan.shard(shard_index)
        return self.storage.committed(SHARDS_DIR, spec.name, self.hashes["generate"], spec.spec_hash)

    def contact_sheet(self, count: int = 32) -> str | None:
        """Write the run's contact sheet from its first committed shards; returns its URL."""
        from synthvision.contact_sheet import write_contact_sheet

        needed = -(-count // self.config.shards.shard_size)
        manifests = [
            m for m in (self.committed_shard(i) for i in range(min(needed, self.plan.num_shards))) if m is not None
        ]
        return write_contact_sheet(self.storage, manifests, count)

    # -- scoring --------------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        from synthvision.filtering import filter_threshold

        return filter_threshold(self.label_space.num_classes, self.config.filter.threshold)

    @property
    def templates(self) -> list[str]:
        return self.config.clip.templates or [self.config.prompts.template or self.label_space.default_template]

    def clip_and_head(self):
        """The CLIP model and its zero-shot head for this label space, built once per process."""
        from synthvision.clip_model import load_clip

        with self._lock:
            if not hasattr(self, "_clip_and_head"):
                clip = load_clip(self.config.clip)
                head = ZeroShotHead(clip.text_classifier(self.label_space.classes, self.templates), clip.logit_scale)
                self._clip_and_head = (clip, head)
            return self._clip_and_head

    def score(self, shard_index: int) -> tuple[Manifest, bool]:
        """Score a committed shard. A shard whose manifest names a tar that is missing, of another
        size or of other bytes is moved to `quarantine/` (so it is generated again) and reported
        with CorruptShard."""
        spec = self.plan.shard(shard_index)
        source = self.committed_shard(shard_index)
        try:
            if source is None:
                recorded = self.storage.read_manifest(SHARDS_DIR, spec.name)
                if recorded is None or not recorded.matches(self.hashes["generate"], spec.spec_hash):
                    raise DataError(f"shard {spec.name} is not committed: run the generate stage first")
                raise CorruptShard(
                    f"{self.storage.url_of(recorded.data_file)} is missing or not the {recorded.bytes} bytes "
                    "its manifest records"
                )
            return score_shard(
                source,
                self.clip_and_head,
                self.storage,
                self.hashes["score"],
                self.threshold,
                self.config.clip.batch_size,
            )
        except CorruptShard as error:
            folder = self.storage.quarantine([manifest_path(SHARDS_DIR, spec.name), shard_tar_path(spec.name)])
            raise CorruptShard(f"shard {spec.name} quarantined to {folder} (generate it again): {error}") from None

    def committed_scores(self, shard_index: int) -> Manifest | None:
        source = self.committed_shard(shard_index)
        # scores count only if computed from exactly the tar committed now
        return (
            None
            if source is None
            else self.storage.committed(SCORES_DIR, source.shard, self.hashes["score"], source.sha256)
        )

    # -- training and evaluation ----------------------------------------------------------------
    def test_set_url(self) -> str | None:
        evaluation = self.config.evaluation
        if evaluation.demo_test_set is not None:
            from synthvision.demo_data import write_colour_test_set

            demo = evaluation.demo_test_set
            return write_colour_test_set(
                self.storage, "demo_test_set", self.label_space, demo.per_class, demo.size, self.config.seed
            )
        return evaluation.test_set

    def synthetic_training_data(self) -> SyntheticData:
        """Cached CLIP features, labels and logits of the committed, scored synthetic images (those
        that pass the CLIP filter, when it is on)."""
        table = read_scores(self.storage, self._every_shard(self.committed_scores, "have no committed scores", "score"))
        passed = np.asarray(table["passed"])
        use = passed if self.config.filter.clip_filter else np.ones(table.num_rows, bool)
        if not use.any():
            raise DataError(
                "the CLIP filter rejected every synthetic image: nothing to train on (lower filter.threshold)"
            )
        return SyntheticData(
            features=np.stack(table["embedding"].to_numpy(zero_copy_only=False)[use]).astype(np.float32),
            labels=np.asarray(table["label"])[use],
            teacher=np.stack(table["logits"].to_numpy(zero_copy_only=False)[use]).astype(np.float32),
            keys=[key for key, used in zip(table["key"].to_pylist(), use, strict=True) if used],
            scored=int(table.num_rows),
            passed=int(passed.sum()),
        )

    def synthetic_images(self, keys: list[str]) -> list[Image.Image]:
        """The generated images with these sample keys, in that order (read from the committed tars)."""
        from synthvision.shard_io import decode_image, read_samples, sample_image_bytes

        wanted, found = set(keys), {}
        for manifest in self.committed_shards():
            with self.storage.open(manifest.data_file) as stream:
                for sample in read_samples(stream, manifest.data_file):
                    if sample["__key__"] in wanted:
                        found[sample["__key__"]] = decode_image(sample_image_bytes(sample))
        return [found[key] for key in keys]

    def train_and_evaluate(self) -> dict[str, Any]:
        """CT on the committed scores, then top-1 on the test set against zero-shot CLIP; writes the report
        (last, so it commits the stage). A committed report of this exact config is returned as is."""
        existing = self.committed_report("train")
        if existing is not None:
            return existing
        from synthvision.evaluation import encode_test_set
        from synthvision.reporting import write_report
        from synthvision.training import predict, top1, tune_classifier, zero_shot_head

        synthetic = self.synthetic_training_data()
        features, labels, teacher = synthetic.features, synthetic.labels, synthetic.teacher

        clip, zero_shot = self.clip_and_head()
        result = tune_classifier(
            features,
            labels,
            teacher,
            zero_shot_head(zero_shot.class_embeddings, zero_shot.logit_scale),
            self.config.training,
            self.config.seed,
        )
        head_state = {
            "weight": result.head.weight.detach().contiguous(),
            "bias": result.head.bias.detach().contiguous(),
        }
        self.storage.write_bytes(
            f"{TRAIN_DIR}/head.safetensors",
            save_safetensors(head_state, metadata={"config_hash": self.hashes["train"]}),
        )

        evaluation: dict[str, Any] = {"test_set": None}
        url = self.test_set_url()
        if url is not None:
            test_features, test_labels = encode_test_set(
                clip,
                url,
                self.config.evaluation.format,
                self.label_space,
                self.config.clip.batch_size,
                self.config.storage_options,
            )
            evaluation = {
                "test_set": url,
                "test_images": int(len(test_labels)),
                "zero_shot_top1": top1(zero_shot.logits(test_features).argmax(axis=1), test_labels),
                "tuned_top1": top1(predict(result.head, test_features), test_labels),
            }
            evaluation["gain"] = evaluation["tuned_top1"] - evaluation["zero_shot_top1"]
        report = {
            "run_name": self.config.run_name,
            "output": self.storage.url,
            "config_hashes": self.hashes,
            "label_space": {"name": self.label_space.name, "classes": self.label_space.num_classes},
            "strategies": {
                "prompts": self.config.prompts.strategy,
                "clip_filter": self.config.filter.clip_filter,
                "loss": self.config.training.loss,
            },
            "data": {
                "synthetic_images": synthetic.scored,
                "passed_filter": synthetic.passed,
                "trained_on": len(labels),
                "filter_threshold": self.threshold,
            },
            "training": {
                **self.config.training.model_dump(),
                "steps": result.steps,
                "epoch_losses": result.epoch_losses,
            },
            "evaluation": evaluation,
        }
        failpoints.reach("train.before_report")
        write_report(self.storage, TRAIN_DIR, report)
        return report

    def few_shot(self) -> dict[str, Any]:
        """Few-shot CT per shot count and strategy on the committed synthetic data, evaluated on the
        test set; writes `fewshot/report.{json,md}` and `accuracy.png` (the report last: it commits
        the stage). A committed report of this exact config is returned as is."""
        if self.config.fewshot is None:
            raise ConfigError("fewshot: the config has no fewshot section (set fewshot.train_set)")
        existing = self.committed_report("fewshot")
        if existing is not None:
            return existing
        from synthvision.evaluation import encode_labelled
        from synthvision.fewshot import Encoder, Part, real_filter, sample_shots, train_few_shot
        from synthvision.fewshot_report import write_few_shot_report
        from synthvision.training import predict, top1, zero_shot_head

        fewshot = self.config.fewshot
        url = self.test_set_url()
        if url is None:
            raise ConfigError("fewshot: needs a test set (evaluation.test_set or evaluation.demo_test_set)")
        synthetic = self.synthetic_training_data()
        clip, zero_shot = self.clip_and_head()
        batch, options = self.config.clip.batch_size, self.config.storage_options
        image_level = (
            fewshot.batch_norm == "train" or fewshot.tune_encoder
        )  # the tower runs at every step, on the images
        pool = encode_labelled(
            clip, fewshot.train_set, fewshot.format, self.label_space, batch, options, "fewshot.train_set", image_level
        )
        test = encode_labelled(
            clip, url, self.config.evaluation.format, self.label_space, batch, options, keep_images=image_level
        )
        shared = set(pool.digests) & set(test.digests)
        if shared:
            raise DataError(
                f"fewshot.train_set shares {len(shared)} image(s) with the test set {url}: the shots must be "
                "disjoint from it"
            )
        device = resolve_device(fewshot.device)
        syn_images = self.synthetic_images(synthetic.keys) if image_level else []
        rows = []
        for shots in fewshot.shots:
            chosen = sample_shots(pool.labels, shots, self.label_space.classes, self.config.seed)
            keep = np.ones(len(synthetic.labels), bool)
            if fewshot.real_filter.enabled:
                keep = real_filter(
                    synthetic.features,
                    synthetic.labels,
                    pool.features[chosen],
                    pool.labels[chosen],
                    fewshot.real_filter.k,
                )
            syn_labels, syn_teacher = synthetic.labels[keep], synthetic.teacher[keep]
            for strategy in fewshot.strategies:
                head = zero_shot_head(zero_shot.class_embeddings, zero_shot.logit_scale)
                if image_level:
                    encoder = Encoder(
                        clip.model.visual, clip.preprocess, device, fewshot.batch_norm, fewshot.tune_encoder
                    )
                    real = Part.images([pool.images[i] for i in chosen], pool.labels[chosen], encoder)
                    kept_images = [syn_images[i] for i in np.flatnonzero(keep)]
                    syn = (
                        Part.images(kept_images, syn_labels, encoder, syn_teacher, fewshot.synthetic_loss)
                        if keep.any()
                        else None
                    )
                    result = train_few_shot(strategy, head, real, syn, fewshot, self.config.seed, encoder)
                    test_features = encoder.encode(test.images, batch).numpy()
                else:
                    real = Part.cached(pool.features[chosen], pool.labels[chosen], device=device)
                    syn = (
                        Part.cached(synthetic.features[keep], syn_labels, syn_teacher, fewshot.synthetic_loss, device)
                        if keep.any()
                        else None
                    )
                    result = train_few_shot(strategy, head, real, syn, fewshot, self.config.seed)
                    test_features = test.features
                rows.append(
                    {
                        "shots": shots,
                        "strategy": strategy,
                        "top1": top1(predict(result.head, test_features), test.labels),
                        "steps": len(result.steps),
                        "synthetic_used": 0 if strategy == "real_only" else int(keep.sum()),
                        "real_filter_dropped": int((~keep).sum()),
                    }
                )
        report = {
            "run_name": self.config.run_name,
            "config_hashes": self.hashes,
            "test_set": url,
            "test_images": int(len(test.labels)),
            "zero_shot_top1": top1(zero_shot.logits(test.features).argmax(axis=1), test.labels),
            "synthetic": {
                "scored": synthetic.scored,
                "after_clip_filter": len(synthetic.labels),
                "real_filter": fewshot.real_filter.model_dump(),
            },
            "encoder": {"batch_norm": fewshot.batch_norm, "tuned": fewshot.tune_encoder},
            "results": rows,
        }
        write_few_shot_report(self.storage, FEWSHOT_DIR, report)
        return report

    def committed_report(self, name: str) -> dict[str, Any] | None:
        """Stage `name`'s committed report (written last, it commits a whole-run stage) if it carries
        this config's stage hash; else None. Train and fewshot reports record every stage's hash
        (`config_hashes`), the ResNet stages their own (`config_hash`)."""
        report = self.storage.read_json(stage(name).report_file)
        if report is None:
            return None
        recorded = report["config_hashes"].get(name) if "config_hashes" in report else report.get("config_hash")
        return report if recorded == self.hashes[name] else None

    # -- bookkeeping ----------------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the output's lock while the block writes, after checking (and recording in run.json)
        that this config may write here (see `output_lock` and `_record_version`), and clearing the
        temporary files a killed run left."""
        orchestration = self.config.orchestration
        with locked_output(self.storage, orchestration.lock_ttl_s, orchestration.lock_wait_s) as outermost:
            if outermost:
                self._record_version()
                self.storage.sweep_temporaries()
            yield

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
            "version": version,
            "config": self.config.model_dump(mode="json"),
            "config_hashes": self.hashes,
            "classes": list(self.label_space.classes),
        }
        self.storage.write_bytes(RUN_RECORD, json.dumps(record, indent=1).encode("utf-8"))

    def index_wave(self, name: str, wave: int, manifests: list[Manifest]) -> None:
        """Index the manifests a wave of stage `name` committed, so `status` need not read them one by one."""
        self.storage.write_index(stage(name).folder, f"wave-{wave:04d}", sorted(manifests, key=lambda m: m.shard))

    def status(self) -> list[StageStatus]:
        """Planned and committed counts for every stage the config enables, read from storage alone
        (no model, no Prefect).

        A shard counts as committed when its manifest carries this config's stage hash and its data
        file is whole (specs are a pure function of the config, so their hashes are not recomputed);
        scores count when they were computed from exactly the committed tar; a whole-run stage when
        its report carries this config's stage hash.
        """
        planned = set(shard_name(index) for index in range(self.num_shards))
        prompts = read_prompts(self.storage, self.hashes["prompts"])
        shards = scores = {}
        if prompts is not None:
            shards = {
                n: m
                for n, m in self.storage.committed_by_hash(SHARDS_DIR, self.hashes["generate"]).items()
                if n in planned
            }
            scores = self.storage.committed_by_hash(SCORES_DIR, self.hashes["score"])
        committed = {
            "prompts": int(prompts is not None),
            "generate": len(shards),
            "score": sum(n in scores and scores[n].spec_hash == m.sha256 for n, m in shards.items()),
        }
        return [
            StageStatus(
                row.name,
                self.num_shards if row.per_shard else 1,
                committed[row.name] if row.name in committed else int(self.committed_report(row.name) is not None),
            )
            for row in enabled(self.config)
        ]


def _changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`field: old -> new` for each leaf that differs between two config dumps (the fields that
    change no data aside)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for key in sorted(set(old) | set(new))
            if not (prefix == "" and key in ("orchestration", "output", "run_name", "storage_options"))
            for change in _changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


@once_per_config
def open_run(config: RunConfig) -> Run:
    """The process-wide `Run` for a config: shard tasks share its prompt table and loaded models.
    (A named function, not `once_per_config(Run)`, so that worker processes import it by name.)"""
    return Run(config)
