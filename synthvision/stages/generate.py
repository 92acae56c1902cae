"""The generate stage: one shard of images per call, from its spec (prompts and seeds fixed by the plan).

A shard is written whole to a temporary name, committed under its final name, and its manifest is
written last (see `storage.commits`). `stages.units.ensure` asks `committed` once, then calls
`generate` only when there is work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from synthvision.core import failpoints, stopping
from synthvision.core.batching import batched
from synthvision.core.config import RunConfig
from synthvision.core.data_config import GeneratorConfig
from synthvision.core.label_spaces import load_label_space
from synthvision.core.manifest import Manifest
from synthvision.core.memo import once_per_config
from synthvision.core.pipelining import cpu_workers
from synthvision.core.planning import shard_name
from synthvision.core.stage_table import stage
from synthvision.datasets.labelled import iter_labelled
from synthvision.methods.fewshot import sample_shots
from synthvision.reports.page import Page, PageItem
from synthvision.stages.units import model_turn
from synthvision.storage.commits import every
from synthvision.storage.tars import ImageEncoding, ShardWriter, decode_image, read_samples, sample_image_bytes

if TYPE_CHECKING:
    from synthvision.run import Run

SHARDS_DIR = stage("generate").folder
ALL_BLACK = "all_black"  # flag: every pixel 0 (what NaN latents or a safety checker's blank-out decode to)


@dataclass(frozen=True)
class Reference:
    """A real shot that guides generation, and the sha256 of its file (recorded with each sample)."""

    image: Image.Image
    digest: str


@once_per_config
def guidance_shots(config: RunConfig) -> list[list[Reference]]:
    """Per class, its M real shots (the same ones the few-shot stage trains on), loaded once per process."""
    fewshot, label_space = config.fewshot, load_label_space(config.label_space)
    pool = list(
        iter_labelled(fewshot.train_set, fewshot.format, label_space, config.storage_options, field="fewshot.train_set")
    )
    labels = np.array([label for _, label, _ in pool])
    shots: list[list[Reference]] = [[] for _ in label_space.classes]
    for index in sample_shots(labels, fewshot.real_guidance.shots, label_space.classes, config.seed):
        image, label, digest = pool[index]
        shots[label].append(Reference(image, digest))
    return shots


def shard_tar_path(shard: str) -> str:
    return f"{SHARDS_DIR}/{shard}.tar"


def image_flags(image: Image.Image) -> list[str]:
    """Problems worth flagging in an image the generator returned (it is kept, and counted in the
    manifest under the flag, so a bad model or dtype shows up in the run's records)."""
    return [ALL_BLACK] if image.getextrema() in ((0, 0), ((0, 0),) * len(image.getbands())) else []


def image_encoding(config: GeneratorConfig) -> ImageEncoding:
    return ImageEncoding(config.image_format, config.image_quality, config.png_compress_level)


def committed(run: Run, index: int) -> Manifest | None:
    spec = run.shard(index)
    return run.commits.shard("generate", spec.name, spec.spec_hash)


def page(run: Run, summary: Any, done_now: bool) -> Page:
    """The stage's summary and its contact sheet of the first shards (it replaces the live one of the latest)."""
    sheet = contact_sheet(run)
    return Page(summary, [] if sheet is None else [PageItem("contact-sheet", "contact sheet", sheet, live=True)])


def live(run: Run, manifests: list[Manifest]) -> Page | None:
    """What the stage shows while it runs: the contact sheet of its latest shards, refreshed in place."""
    sheet = contact_sheet(run, manifests)
    return (
        None
        if sheet is None
        else Page(None, [PageItem("contact-sheet", "contact sheet (latest shards)", sheet, live=True)])
    )


def generate(run: Run, index: int) -> Manifest:
    """Generate shard `index` and commit it; returns its manifest."""
    started = time.perf_counter()
    spec, prompts, config_hash = run.shard(index), run.prompts, run.hashes["generate"]
    # 1. the model (loaded once per process) and, with real guidance, every class's real shots
    generator = run.generator()
    guidance = run.guidance
    shots = guidance_shots(run.config) if guidance is not None else None
    model_seconds, flagged = 0.0, {}
    data_file = shard_tar_path(spec.name)
    encoding, workers = image_encoding(run.config.generator), cpu_workers(run.config.generator.workers)
    # images are encoded and written into the tar by `workers` threads, in order, while the model runs on
    turn = model_turn()  # the model's place, held from the first batch to the last (`units.ModelTurn`)
    with (
        run.storage.atomic_writer(data_file) as stream,
        ShardWriter(stream, encoding, workers, max_pending=2 * generator.batch_size) as tar,
    ):
        turn.take()
        for batch in batched(spec.samples, generator.batch_size):
            # 2. a batch of the spec's samples: its prompts, seeds and (real guidance) reference shots
            texts = [prompts[sample.prompt_id].text for sample in batch]
            seeds = [sample.seed for sample in batch]
            references = [shots[s.class_id][s.reference] for s in batch] if shots is not None else None
            # 3. the model's images
            tick = time.perf_counter()
            if references is None:
                images = generator.generate(texts, seeds)
            else:
                images = generator.generate_guided(texts, seeds, [r.image for r in references], guidance.strength)
            model_seconds += time.perf_counter() - tick
            # 4. each image into the tar with its metadata; problems flagged, never dropped
            for i, (sample, text, image) in enumerate(zip(batch, texts, images, strict=True)):
                flags = image_flags(image)
                for flag in flags:
                    flagged[flag] = flagged.get(flag, 0) + 1
                meta = {
                    "key": sample.key,
                    "prompt": text,
                    "prompt_id": sample.prompt_id,
                    "class_id": sample.class_id,
                    "class_name": prompts[sample.prompt_id].class_name,
                    "seed": sample.seed,
                    "generator": run.models["generator"],
                    "config_hash": config_hash,
                    "shard": spec.name,
                    **({} if references is None else _guided(references[i], guidance.strength)),
                    **({"flags": flags} if flags else {}),
                }
                tar.write(sample.key, image, meta, sample.class_id)
            failpoints.reach("generate.batch")
            stopping.check()  # a stopped process abandons the shard here, uncommitted
        # the model is free for the next shard while this one's last images are encoded and written
        turn.give_back()
        failpoints.reach("generate.after_model")
    # 5. the manifest, written last: it commits the shard
    manifest = Manifest(
        shard=spec.name,
        stage="generate",
        config_hash=config_hash,
        spec_hash=spec.spec_hash,
        data_file=data_file,
        count=tar.count,
        bytes=stream.bytes,
        sha256=stream.sha256,
        timings={"model_s": round(model_seconds, 4), "total_s": round(time.perf_counter() - started, 4)},
        dropped=flagged,
        models={"generator": run.models["generator"]},
    )
    failpoints.reach("generate.before_manifest")
    run.commits.commit_shard(manifest)
    return manifest


def _guided(reference: Reference, strength: float) -> dict[str, Any]:
    return {"reference": reference.digest, "real_guidance_strength": strength}


def committed_shards(run: Run) -> list[Manifest]:
    """Every shard's manifest; an error naming the first shard that is not committed."""
    return every(
        ((shard_name(i), committed(run, i)) for i in range(run.plan.num_shards)),
        "are not generated",
        "generate",
    )


def read_images(run: Run, keys: list[str]) -> list[Image.Image]:
    """The generated images with these sample keys, in that order (read from the committed tars)."""
    wanted, found = set(keys), {}
    for manifest in committed_shards(run):
        with run.storage.open(manifest.data_file) as stream:
            for sample in read_samples(stream, manifest.data_file):
                if sample["__key__"] in wanted:
                    found[sample["__key__"]] = decode_image(sample_image_bytes(sample))
    return [found[key] for key in keys]


def contact_sheet(run: Run, manifests: list[Manifest] | None = None, count: int = 32) -> str | None:
    """Write the run's contact sheet of `manifests` (while the stage runs: its latest shards), or of its
    first committed shards; returns markdown that shows it (None before any shard is committed)."""
    from synthvision.reports.contact_sheet import contact_sheet_markdown

    if manifests is None:
        needed = min(-(-count // run.config.shards.shard_size), run.plan.num_shards)
        manifests = [m for m in (committed(run, i) for i in range(needed)) if m is not None]
        heading = f"{run.config.run_name}: contact sheet"
    else:
        heading = f"{run.config.run_name}: contact sheet of the latest shards (generate is running)"
    return contact_sheet_markdown(run.storage, manifests, heading, count)
