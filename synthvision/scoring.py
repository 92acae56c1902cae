"""Score one shard with CLIP: zero-shot probabilities, CF pass/fail, logits and embeddings to parquet.

The parquet holds, per sample: key, label, prob (CLIP's probability of the label), top1, passed (CF),
logits (all classes: the soft targets of SCE) and embedding (the image feature: training's cache).
A scores manifest is committed last; it is tied to the exact tar it scored through that tar's sha256,
so a regenerated shard is rescored.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synthvision import failpoints
from synthvision.clip_model import ClipModel
from synthvision.errors import DataError
from synthvision.filtering import CLIP_FILTER_REASON, clip_filter, softmax, zero_shot_logits
from synthvision.manifest import Manifest
from synthvision.shard_io import decode_image, read_samples, sample_image_bytes
from synthvision.stages import stage
from synthvision.storage import HashingReader, Storage

SCORES_DIR = stage("score").folder
DECODE_ERROR = "decode_error"


class CorruptShard(DataError):
    """A committed shard's tar is not the one its manifest describes (changed, truncated or rotted
    since it was written): the run quarantines it, regenerates it and goes on."""


def scores_path(shard: str) -> str:
    return f"{SCORES_DIR}/{shard}.parquet"


@dataclass(frozen=True)
class ZeroShotHead:
    """What scoring needs besides the image encoder: class embeddings and CLIP's logit scale."""

    class_embeddings: np.ndarray  # C x D, unit norm
    logit_scale: float

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return zero_shot_logits(embeddings, self.class_embeddings, self.logit_scale)


def _decoded(samples: Iterator[dict], dropped: dict[str, int]) -> Iterator[tuple[str, int, object]]:
    for sample in samples:
        try:
            image = decode_image(sample_image_bytes(sample))
            label = int(sample["cls"])
        except Exception:  # any undecodable sample is counted with its reason, never fatal
            dropped[DECODE_ERROR] = dropped.get(DECODE_ERROR, 0) + 1
            continue
        yield sample["__key__"], label, image


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_shard(
    source: Manifest,
    get_clip: Callable[[], tuple[ClipModel, ZeroShotHead]],
    storage: Storage,
    config_hash: str,
    threshold: float,
    batch_size: int,
) -> tuple[Manifest, bool]:
    """Make sure the scores of the shard committed by `source` exist; returns (manifest, scored now)."""
    existing = storage.committed(SCORES_DIR, source.shard, config_hash, source.sha256)
    if existing is not None:
        return existing, False

    started = time.perf_counter()
    clip, head = get_clip()
    dropped: dict[str, int] = {}
    keys: list[str] = []
    labels: list[int] = []
    embeddings: list[np.ndarray] = []
    with storage.open(source.data_file) as raw:
        stream = HashingReader(raw)
        try:
            for batch in _batches(
                _decoded(read_samples(stream, storage.url_of(source.data_file)), dropped), batch_size
            ):
                keys += [key for key, _, _ in batch]
                labels += [label for _, label, _ in batch]
                embeddings.append(clip.encode_images([image for _, _, image in batch]))
                failpoints.reach("score.batch")
        except Exception as error:
            # a tar that does not parse is corrupt if its bytes are not the committed ones; otherwise
            # the fault was on the way (a dropped connection) and the task's retry reads it again
            if storage.sha256(source.data_file) != source.sha256:
                raise CorruptShard(
                    f"{storage.url_of(source.data_file)} does not match its manifest's sha256 "
                    f"({type(error).__name__}: {error})"
                ) from None
            raise
        if stream.finish() != source.sha256:
            raise CorruptShard(f"{storage.url_of(source.data_file)} does not match its manifest's sha256")
    features = np.concatenate(embeddings) if embeddings else np.zeros((0, head.class_embeddings.shape[1]), np.float32)
    label_array = np.asarray(labels, dtype=np.int64)
    logits = head.logits(features).astype(np.float32)
    probs = softmax(logits)
    passed = clip_filter(probs, label_array, threshold)
    if (~passed).any():
        dropped[CLIP_FILTER_REASON] = int((~passed).sum())

    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "label": pa.array(label_array, pa.int32()),
            "prob": pa.array(probs[np.arange(len(keys)), label_array], pa.float32()),
            "top1": pa.array(logits.argmax(axis=1) if len(keys) else [], pa.int32()),
            "passed": pa.array(passed, pa.bool_()),
            "logits": pa.array(list(logits), pa.list_(pa.float32())),
            "embedding": pa.array(list(features.astype(np.float32)), pa.list_(pa.float32())),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data_file = scores_path(source.shard)
    with storage.atomic_writer(data_file) as writer:
        writer.write(buffer.getvalue())
    manifest = Manifest(
        shard=source.shard,
        stage="score",
        config_hash=config_hash,
        spec_hash=source.sha256,
        data_file=data_file,
        count=len(keys),
        bytes=writer.bytes,
        sha256=writer.sha256,
        timings={"total_s": round(time.perf_counter() - started, 4)},
        dropped=dropped,
    )
    failpoints.reach("score.before_manifest")
    storage.write_manifest(SCORES_DIR, manifest)
    return manifest, True


def read_scores(storage: Storage, manifests: list[Manifest]) -> pa.Table:
    """All committed scores of a run as one table (the feature cache for training)."""
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(manifest.data_file))) for manifest in manifests]
    return pa.concat_tables(tables)
