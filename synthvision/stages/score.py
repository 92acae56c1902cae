"""The score stage: CLIP zero-shot probabilities, the CLIP filter (CF), logits and embeddings, one
shard per call, into parquet.

The parquet holds, per sample: key, label, prob (the CF head's probability of the label), top1 (the
CF head's), passed (CF), logits (the zero-shot head's, all classes: the soft targets of SCE) and
embedding (the image feature: training's cache).
Scores are tied to the exact tar they scored through that tar's sha256 (their manifest's
`spec_hash`), so a regenerated shard is rescored. A tar that is not the one its manifest describes is
moved to `quarantine/` (so it is generated again) and reported with `CorruptShard`.
"""

from __future__ import annotations

import io
import os
import time
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synthvision.core import failpoints, stopping
from synthvision.core.errors import DataError
from synthvision.core.manifest import Manifest, manifest_path
from synthvision.core.memo import once_per_config
from synthvision.core.pipelining import WorkerProcesses, cpu_workers, in_daemon_process, ordered_map
from synthvision.core.planning import shard_name
from synthvision.core.stage_table import stage
from synthvision.methods.diversity import drop_near_duplicates
from synthvision.methods.filtering import (
    CLIP_FILTER_REASON,
    clip_filter,
    filter_threshold,
    first_per_class,
    per_class_budget,
    softmax,
)
from synthvision.reports.page import Page
from synthvision.stages import generate
from synthvision.stages.units import model_turn
from synthvision.storage.commits import every
from synthvision.storage.store import HashingReader
from synthvision.storage.tars import decode_image, range_samples, sample_image_bytes, sample_ranges

if TYPE_CHECKING:
    from synthvision.core.data_config import ClipConfig
    from synthvision.models.clip import ClipModel
    from synthvision.models.pixels import Pixels
    from synthvision.run import Run

SCORES_DIR = stage("score").folder
DECODE_ERROR = "decode_error"


class CorruptShard(DataError):
    """A committed shard's tar is not the one its manifest describes (changed, truncated or rotted
    since it was written): the run quarantines it, regenerates it and goes on."""


@dataclass(frozen=True)
class SyntheticData:
    """The committed scores of a run's synthetic images, as training reads them."""

    features: np.ndarray
    labels: np.ndarray
    teacher: np.ndarray  # CLIP zero-shot logits: soft targets for SCE
    keys: list[str]  # sample keys, to find the images in the shards
    scored: int  # synthetic images scored
    passed: int  # of those, passing the CLIP filter
    near_duplicates: int = 0  # kept by CF, dropped as near-duplicates (filter.near_duplicates)
    below_threshold: int = 0  # trained on though CF failed them (CF off, or a class short of filter.per_class)


def scores_path(shard: str) -> str:
    return f"{SCORES_DIR}/{shard}.parquet"


def committed(run: Run, index: int) -> Manifest | None:
    """The scores of shard `index`, if computed from exactly the tar committed now."""
    source = generate.committed(run, index)
    return None if source is None else run.commits.shard("score", source.shard, source.sha256)


def page(run: Run, summary: Any, done_now: bool) -> Page:
    return Page(summary)  # its waves' tables and progress are the page


def score(run: Run, index: int) -> Manifest:
    """Score shard `index` and commit the scores; returns their manifest."""
    started = time.perf_counter()
    # 1. the committed shard it scores (a manifest whose tar is gone or resized: quarantined)
    source = _source(run, index)
    # 2. CLIP, its zero-shot head and the CLIP filter's (loaded once per process; one head when they
    #    share their prompts)
    clip, head = run.clip_and_head()
    cf_head = run.filter_head()
    # 3. the image embeddings of the shard's tar, whose bytes must be the committed ones
    dropped: dict[str, int] = {}
    try:
        keys, labels, features = _embed(run, source, clip, dropped)
    except CorruptShard as error:
        raise _quarantined(run, source.shard, str(error)) from None
    # 4. the zero-shot logits (SCE's soft targets); CF keeps an image when the filter head's probability
    #    of its label reaches the threshold
    features = features if len(keys) else np.zeros((0, head.class_embeddings.shape[1]), np.float32)
    label_array = np.asarray(labels, dtype=np.int64)
    logits = head.logits(features).astype(np.float32)
    cf_logits = logits if cf_head is head else cf_head.logits(features).astype(np.float32)
    probs = softmax(cf_logits)
    passed = clip_filter(probs, label_array, threshold(run))
    if (~passed).any():
        dropped[CLIP_FILTER_REASON] = int((~passed).sum())
    # 5. the parquet, then its manifest, written last: it commits the scores
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "label": pa.array(label_array, pa.int32()),
            "prob": pa.array(probs[np.arange(len(keys)), label_array], pa.float32()),
            "top1": pa.array(cf_logits.argmax(axis=1) if len(keys) else [], pa.int32()),
            "passed": pa.array(passed, pa.bool_()),
            "logits": pa.array(list(logits), pa.list_(pa.float32())),
            "embedding": pa.array(list(features.astype(np.float32)), pa.list_(pa.float32())),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data_file = scores_path(source.shard)
    with run.storage.atomic_writer(data_file) as writer:
        writer.write(buffer.getvalue())
    manifest = Manifest(
        shard=source.shard,
        stage="score",
        config_hash=run.hashes["score"],
        spec_hash=source.sha256,
        data_file=data_file,
        count=len(keys),
        bytes=writer.bytes,
        sha256=writer.sha256,
        timings={"total_s": round(time.perf_counter() - started, 4)},
        dropped=dropped,
        models={"clip": run.models["clip"]},
        per_class=_per_class(label_array, passed, table["prob"].to_numpy(), run.label_space.num_classes),
    )
    failpoints.reach("score.before_manifest")
    run.commits.commit_shard(manifest)
    return manifest


def _per_class(labels: np.ndarray, passed: np.ndarray, confidence: np.ndarray, classes: int) -> dict[str, list]:
    """A shard's counts per class for its manifest: images scored, passing CF, and their summed confidence."""
    return {
        "scored": np.bincount(labels, minlength=classes).tolist(),
        "passed": np.bincount(labels[passed], minlength=classes).tolist(),
        "confidence": [round(float(total), 6) for total in np.bincount(labels, confidence, minlength=classes)],
    }


def threshold(run: Run) -> float:
    """CF's threshold: `filter.threshold`, or 1 / classes (better than chance) when unset."""
    return filter_threshold(run.label_space.num_classes, run.config.filter.threshold)


def _source(run: Run, index: int) -> Manifest:
    spec = run.shard(index)
    source = generate.committed(run, index)
    if source is None:
        recorded = run.storage.read_manifest(generate.SHARDS_DIR, spec.name)
        if recorded is None or not recorded.matches(run.hashes["generate"], spec.spec_hash):
            raise DataError(f"shard {spec.name} is not committed: run the generate stage first")
        url = run.storage.url_of(recorded.data_file)
        raise _quarantined(run, spec.name, f"{url} is missing or not the {recorded.bytes} bytes its manifest records")
    return source


def _embed(
    run: Run, source: Manifest, clip: ClipModel, dropped: dict[str, int]
) -> tuple[list[str], list[int], np.ndarray | None]:
    """Keys, labels and image embeddings of a committed tar, batch by batch (an undecodable sample is
    counted in `dropped`, never fatal); `CorruptShard` when the bytes read are not the committed ones.
    While CLIP encodes a batch, a thread reads and hashes the tar and cuts it into the next batches'
    bytes (parsing headers only: `sample_ranges`), and `clip.workers` threads (or processes:
    `in_processes`) cut their members out, decode and preprocess them (the model's thread only waits
    for them)."""
    url = run.storage.url_of(source.data_file)
    keys, labels, embeddings = [], [], []
    config = run.config.clip
    workers, pin = cpu_workers(config.workers), clip.device.type == "cuda"
    processes = decoding_processes(config) if in_processes(config, workers) else None
    with run.storage.open(source.data_file) as raw:
        stream = HashingReader(raw)
        pieces = ((url, piece) for piece in sample_ranges(stream, config.batch_size))  # a batch's bytes each
        turn = model_turn()  # the model's place: taken when the first batch is ready, given back after the last
        try:
            if processes is None:
                prepare = partial(_prepared_on_host, clip.pixels, pin)
                prepared = ordered_map(prepare, pieces, workers, ahead=workers + 1, initializer=_one_torch_thread)
            else:
                prepared = ordered_map(_prepare_in_process, pieces, workers, ahead=workers + 1, processes=processes)
            with closing(prepared):
                for batch in prepared:
                    batch = batch if processes is None else _on_host(batch, pin)
                    if batch.undecodable:
                        dropped[DECODE_ERROR] = dropped.get(DECODE_ERROR, 0) + batch.undecodable
                    if batch.keys:
                        keys += batch.keys
                        labels += batch.labels
                        turn.take()
                        embeddings.append(clip.encode_pixels(batch.pixels))
                    failpoints.reach("score.batch")
                    stopping.check()  # a stopped process abandons the shard here, uncommitted
            turn.give_back()
            failpoints.reach("score.after_model")
        except Exception as error:
            # a tar that does not parse is corrupt if its bytes are not the committed ones; otherwise
            # the fault was on the way (a dropped connection) and the task's retry reads it again
            if run.storage.sha256(source.data_file) != source.sha256:
                raise CorruptShard(
                    f"{url} does not match its manifest's sha256 ({type(error).__name__}: {error})"
                ) from None
            raise
        if stream.finish() != source.sha256:
            raise CorruptShard(f"{url} does not match its manifest's sha256")
    return keys, labels, np.concatenate(embeddings) if embeddings else None


def _quarantined(run: Run, shard: str, problem: str) -> CorruptShard:
    """Move a corrupt shard aside (so it is generated again); the error that says so."""
    folder = run.storage.quarantine([manifest_path(generate.SHARDS_DIR, shard), generate.shard_tar_path(shard)])
    return CorruptShard(f"shard {shard} quarantined to {folder} (generate it again): {problem}")


def _one_torch_thread() -> None:
    """A worker is one of `clip.workers` threads sharing the cores: torch's own intra-op threads on top
    would oversubscribe them. OpenMP's thread count is per calling thread, so we set this thread's
    alone; `torch.set_num_threads` would also change the count every thread started later begins with
    (a later generate shard's thread would run single-threaded, with other float sums)."""
    import torch
    from threadpoolctl import threadpool_limits

    if "parallel backend: OpenMP" in torch.__config__.parallel_info():  # else the setting is process-wide
        torch.get_num_threads()  # torch sets a thread's OpenMP count at its first call: let it, then limit
        threadpool_limits(1, user_api="openmp")


@dataclass(frozen=True)
class PreparedBatch:
    """A batch of a tar's samples, decoded and preprocessed up to CLIP's uint8 pixels."""

    keys: list[str]
    labels: list[int]
    pixels: Any  # N x H x W x 3 uint8: numpy from `_prepare_batch`, a torch tensor from `_on_host` (None: none decoded)
    undecodable: int


def _prepare_batch(pixels: Pixels, piece: tuple[str, bytes]) -> PreparedBatch:
    """Decode and preprocess a batch (a piece of a tar from `sample_ranges`, with the tar's url) in a
    worker; an undecodable sample is counted."""
    url, data = piece
    keys, labels, images = [], [], []
    samples = list(range_samples(data, url))
    for sample in samples:
        try:
            image = pixels.image(decode_image(sample_image_bytes(sample)))
            label = int(sample["cls"])
        except Exception:  # any undecodable sample is counted with its reason, never fatal
            continue
        keys.append(sample["__key__"])
        labels.append(label)
        images.append(image)
    return PreparedBatch(keys, labels, np.stack(images) if images else None, len(samples) - len(keys))


def _on_host(batch: PreparedBatch, pin: bool) -> PreparedBatch:
    """The batch's pixels as a CPU tensor, in page-locked memory for an asynchronous copy to a GPU."""
    import torch

    if batch.pixels is None:
        return batch
    pixels = torch.as_tensor(batch.pixels)  # a tensor already (from a decoding process): itself
    return replace(batch, pixels=pixels.pin_memory() if pin else pixels)


def _prepared_on_host(pixels: Pixels, pin: bool, piece: tuple[str, bytes]) -> PreparedBatch:
    """`_prepare_batch`, then `_on_host`, in a worker thread."""
    return _on_host(_prepare_batch(pixels, piece), pin)


PROCESSES_ABOVE = 4


def in_processes(config: ClipConfig, workers: int) -> bool:
    """Whether images are decoded in worker processes: `clip.processes`, by default where there are
    more than PROCESSES_ABOVE workers (a GPU node: README, Benchmarks, `gil_work.py`). Never in a
    daemonic process (a Dask worker's, by default), which may not start processes."""
    wanted = config.processes if config.processes is not None else workers > PROCESSES_ABOVE
    return wanted and workers > 0 and not in_daemon_process()


@once_per_config
def decoding_processes(config: ClipConfig) -> WorkerProcesses:
    """This process's decoding processes for `config`'s CLIP (started at their first batch)."""
    from synthvision.models.clip import load_clip

    return WorkerProcesses(cpu_workers(config.workers), _start_decoding, (load_clip(config).pixels,))


_decoding: dict[str, Pixels] = {}  # in a decoding process: the preprocessing `_start_decoding` received


def _start_decoding(pixels: Pixels) -> None:
    """A decoding process's start: one torch thread (its siblings share the cores), a lower priority
    than the stage's own process (its serial part feeds the model: where the cores are short, the OS
    should run it first), the preprocessing."""
    import torch

    torch.set_num_threads(1)
    os.nice(5)
    _decoding["pixels"] = pixels


def _prepare_in_process(piece: tuple[str, bytes]) -> PreparedBatch:
    """`_prepare_batch` in a decoding process; the pixels travel back in shared memory (a torch tensor's
    pickling moves it there: only a handle goes through the pipe)."""
    return _on_host(_prepare_batch(_decoding["pixels"], piece), pin=False)


def committed_scores(run: Run) -> list[Manifest]:
    """Every shard's scores; an error naming the first shard without committed scores."""
    return every(
        ((shard_name(i), committed(run, i)) for i in range(run.plan.num_shards)),
        "have no committed scores",
        "score",
    )


def read_scores(run: Run) -> pa.Table:
    """Every committed shard's scores, in shard order (one row per scored image)."""
    manifests = committed_scores(run)
    return pa.concat_tables([pq.read_table(io.BytesIO(run.storage.read_bytes(m.data_file))) for m in manifests])


def kept(run: Run, table: pa.Table, features: np.ndarray) -> tuple[np.ndarray, int]:
    """Which scored images training uses: of the first `filter.first_per_class` of each class (all
    without it), with the CLIP filter on, those it keeps (every passing
    image, or `filter.per_class` per class), all of them with it off; then, with
    `filter.near_duplicates`, the first of each group of a class's near-duplicates (by `features`,
    the table's `embeddings`). And how many near-duplicates that dropped."""
    passed, labels = np.asarray(table["passed"]), np.asarray(table["label"])
    cf = run.config.filter
    within = (
        np.ones(table.num_rows, bool) if cf.first_per_class is None else first_per_class(labels, cf.first_per_class)
    )
    use = passed & within if cf.clip_filter else within
    if cf.clip_filter and cf.per_class is not None:  # the paper's fixed budget per class
        rows = np.flatnonzero(within)
        use = np.zeros(table.num_rows, bool)
        use[rows] = per_class_budget(
            labels[rows], np.asarray(table["prob"])[rows], passed[rows], cf.per_class, run.config.seed
        )
    if cf.near_duplicates is None:
        return use, 0
    deduplicated = drop_near_duplicates(features, labels, use, cf.near_duplicates)
    return deduplicated, int(use.sum() - deduplicated.sum())


def embeddings(table: pa.Table) -> np.ndarray:
    """The scored images' CLIP features (N x D, float32)."""
    return np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)


def read_synthetic(run: Run) -> SyntheticData:
    """Cached CLIP features, labels and logits of the committed, scored synthetic images that training
    uses (see `kept`)."""
    table = read_scores(run)
    passed, labels, features = np.asarray(table["passed"]), np.asarray(table["label"]), embeddings(table)
    use, near_duplicates = kept(run, table, features)
    if not use.any():
        raise DataError("the CLIP filter rejected every synthetic image: nothing to train on (lower filter.threshold)")
    return SyntheticData(
        features=features[use],
        labels=labels[use],
        teacher=np.stack(table["logits"].to_numpy(zero_copy_only=False)[use]).astype(np.float32),
        keys=[key for key, used in zip(table["key"].to_pylist(), use, strict=True) if used],
        scored=int(table.num_rows),
        passed=int(passed.sum()),
        near_duplicates=near_duplicates,
        below_threshold=int((use & ~passed).sum()),
    )
