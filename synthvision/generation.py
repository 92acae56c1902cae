"""Generate one shard: the unit of work of the generation stage.

`generate_shard` is idempotent. A shard whose manifest matches the config and spec is returned as is,
without loading a model; otherwise the whole shard is written from scratch to a temporary name,
committed under its final name, and the manifest is written last.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from synthvision.generators import Generator
from synthvision.manifest import Manifest
from synthvision.planning import ShardSpec
from synthvision.prompts import Prompt
from synthvision.shard_io import ShardWriter
from synthvision.storage import Storage

SHARDS_DIR = "shards"


def shard_tar_path(shard: str) -> str:
    return f"{SHARDS_DIR}/{shard}.tar"


def generate_shard(
    spec: ShardSpec,
    prompts: list[Prompt],
    get_generator: Callable[[], Generator],
    storage: Storage,
    config_hash: str,
    image_format: str,
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
    model_seconds = 0.0
    data_file = shard_tar_path(spec.name)
    with storage.atomic_writer(data_file) as stream, ShardWriter(stream, image_format) as writer:
        for start in range(0, len(spec.samples), generator.batch_size):
            batch = spec.samples[start : start + generator.batch_size]
            texts = [prompts[sample.prompt_id].text for sample in batch]
            tick = time.perf_counter()
            images = generator.generate(texts, [sample.seed for sample in batch])
            model_seconds += time.perf_counter() - tick
            for sample, text, image in zip(batch, texts, images, strict=True):
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
                }
                writer.write(sample.key, image, meta, sample.class_id)
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
    )
    storage.write_manifest(SHARDS_DIR, manifest)
    return manifest, True
