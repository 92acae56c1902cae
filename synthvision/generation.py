"""Generate one shard: the unit of work of the generation stage.

`generate_shard` is idempotent. A shard whose manifest matches the config and spec is returned as is,
without loading a model; otherwise the whole shard is written from scratch to a temporary name,
committed under its final name, and the manifest is written last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from synthvision import failpoints
from synthvision.generators import Generator
from synthvision.manifest import Manifest
from synthvision.planning import ShardSpec
from synthvision.prompts import Prompt
from synthvision.shard_io import ShardWriter
from synthvision.stages import stage
from synthvision.storage import Storage

SHARDS_DIR = stage("generate").folder
ALL_BLACK = "all_black"  # flag: every pixel 0 (what NaN latents or a safety checker's blank-out decode to)


def image_flags(image: Image.Image) -> list[str]:
    """Problems worth flagging in an image the generator returned (it is kept, and counted in the
    manifest under the flag, so a bad model or dtype shows up in the run's records)."""
    return [ALL_BLACK] if image.getextrema() in ((0, 0), ((0, 0),) * len(image.getbands())) else []


def shard_tar_path(shard: str) -> str:
    return f"{SHARDS_DIR}/{shard}.tar"


@dataclass(frozen=True)
class Reference:
    """A real shot that guides generation, and the sha256 of its file (recorded with each sample)."""

    image: Image.Image
    digest: str


@dataclass(frozen=True)
class Guidance:
    """Real guidance: per class its shots (loaded only when a shard is generated) and t* / T."""

    shots: Callable[[], list[list[Reference]]]
    strength: float


def generate_shard(
    spec: ShardSpec,
    prompts: list[Prompt],
    get_generator: Callable[[], Generator],
    storage: Storage,
    config_hash: str,
    image_format: str,
    guidance: Guidance | None = None,
) -> tuple[Manifest, bool]:
    """Make sure `spec`'s shard is committed; returns its manifest and whether it was generated now.

    `get_generator` is called only when there is work to do, so skipping a finished shard costs one
    manifest read and never a model load.
    """
    existing = storage.committed(SHARDS_DIR, spec.name, config_hash, spec.spec_hash)
    if existing is not None:
        return existing, False

    started = time.perf_counter()
    generator = get_generator()
    shots = guidance.shots() if guidance is not None else None
    model_seconds = 0.0
    flagged: dict[str, int] = {}
    data_file = shard_tar_path(spec.name)
    with storage.atomic_writer(data_file) as stream, ShardWriter(stream, image_format) as writer:
        for start in range(0, len(spec.samples), generator.batch_size):
            batch = spec.samples[start : start + generator.batch_size]
            texts = [prompts[sample.prompt_id].text for sample in batch]
            seeds = [sample.seed for sample in batch]
            references = [shots[s.class_id][s.reference] for s in batch] if shots is not None else None
            tick = time.perf_counter()
            if references is None:
                images = generator.generate(texts, seeds)
            else:
                images = generator.generate_guided(texts, seeds, [r.image for r in references], guidance.strength)
            model_seconds += time.perf_counter() - tick
            for i, (sample, text, image) in enumerate(zip(batch, texts, images, strict=True)):
                guided = (
                    {}
                    if references is None
                    else {"reference": references[i].digest, "real_guidance_strength": guidance.strength}
                )
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
                    "generator": generator.name,
                    "config_hash": config_hash,
                    "shard": spec.name,
                    **guided,
                    **({"flags": flags} if flags else {}),
                }
                writer.write(sample.key, image, meta, sample.class_id)
            failpoints.reach("generate.batch")
    manifest = Manifest(
        shard=spec.name,
        stage="generate",
        config_hash=config_hash,
        spec_hash=spec.spec_hash,
        data_file=data_file,
        count=writer.count,
        bytes=stream.bytes,
        sha256=stream.sha256,
        timings={"model_s": round(model_seconds, 4), "total_s": round(time.perf_counter() - started, 4)},
        dropped=flagged,
    )
    failpoints.reach("generate.before_manifest")
    storage.write_manifest(SHARDS_DIR, manifest)
    return manifest, True
