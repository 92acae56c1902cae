"""How busy the pipeline keeps a GPU: the stages' CPU work beside a simulated model.

    python benchmarks/gpu_utilisation.py [--repeats 3] [--batches 30]

The model is simulated: the load-test generator and the load-test CLIP wait a fixed time per batch (a
sleep releases the GIL as a GPU sync does) and return ready images / features; everything else is the
library's own shard function (`stages.generate.generate`, `stages.score.score`) on local storage:
PNG encoding, tar writing and sha256 for generate; tar reading and sha256, PNG decoding and open_clip's
RN50 preprocessing (224 px bicubic, centre crop, normalise) for score. The pre-training row iterates an
epoch of `epoch_batches` (tar reading, decoding, MoCo v2's two augmented 224 px views) and waits the
step time per batch. Columns, per case:

  ideal       batch size / model time: the images/s of a model that is never kept waiting
  CPU limit   this machine's cores x the stage's images/s on one core (no model time, no workers, torch
              on one thread): the CPU work per image the stage cannot skip, spread perfectly over
              every core
  serial      images/s with `workers: 0` (every step in the model's thread, as before pipelining)
  pipelined   images/s with the default workers (threads beside the model; for pre-training, as many
              DataLoader processes as a GPU run gets by default)
  busy        the share of the wall time the model was computing (pipelined)
  of target   pipelined / min(ideal, CPU limit); goal: generate >= 0.95, score and pre-training >= 0.9

Each figure is the median of --repeats runs.

A second table runs short shards as a flow runs them: --shards shards of 64 images, two or three in
flight (threads: `orchestration.max_workers`), one model place (a semaphore standing for one GPU
slot), every shard through `ensure`. *Whole shard*: the place held from the shard's start to its
commit (a slot around the task, as before); *model's turn*: the stage takes it at its first model call
and gives it back after its last (`stages.units.ModelTurn`). Each cell: images/s (its ratio to one
512-image shard's, measured in the same run; busy as above). A third table gives each image format's
encoding cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch

from synthvision.core.config import parse_config
from synthvision.core.pipelining import cpu_workers
from synthvision.models.generators.loadtest import texture
from synthvision.run import Run
from synthvision.stages import generate, score
from synthvision.stages.units import ensure
from synthvision.storage.tars import ImageEncoding


@dataclass(frozen=True)
class Case:
    name: str
    stage: str  # generate or score
    resolution: int
    batch: int
    model_s: float
    share: float = 1.0  # of --batches per shard (or epoch), for the cases with a long model time


CASES = (
    Case("generate, 256 px PNG, 200 ms per batch of 16", "generate", 256, 16, 0.2),
    Case("generate, 256 px PNG, 1 s per batch of 16", "generate", 256, 16, 1.0, share=1 / 3),
    Case("generate, 512 px PNG, 200 ms per batch of 8", "generate", 512, 8, 0.2),
    Case("score (open_clip RN50 preprocessing), 50 ms per batch of 64", "score", 256, 64, 0.05),
    Case("pre-training loader (MoCo v2, 2 views at 224 px), 500 ms per step of 64", "pretrain", 256, 64, 0.5, 2 / 3),
)


def run_for(case: Case, images: int, model_s: float, workers: int | None, shard_size: int | None = None) -> Run:
    """A fresh output with the prompt table (and, for score, the shards) committed: `images` in shards
    of `shard_size` (default: one shard)."""
    generator = {"backend": "loadtest", "resolution": case.resolution, "batch_size": 16, "workers": None}
    clip = {"model": "loadtest", "batch_size": case.batch, "workers": workers, "seconds_per_batch": model_s}
    if case.stage == "generate":
        generator.update(batch_size=case.batch, seconds_per_batch=model_s, workers=workers)
    config = parse_config(
        {
            "output": tempfile.mkdtemp(prefix="gpu-utilisation-"),
            "label_space": "cifar10",
            "generator": generator,
            "clip": clip,
            "shards": {"images_per_class": -(-images // 10), "shard_size": shard_size or images},
        }
    )
    run = Run(config)
    ensure(run, "prompts")
    if case.stage == "score":
        for index in range(run.plan.num_shards):
            generate.generate(run, index)
        run.clip_and_head()
    else:
        run.generator()
    return run


def measure(case: Case, images: int, model_s: float, workers: int | None) -> tuple[float, float]:
    """(images/s, model seconds / wall seconds) of one shard."""
    if case.stage == "pretrain":
        return measure_loader(case, images, model_s, workers)
    run = run_for(case, images, model_s, workers)
    started = time.perf_counter()
    manifest = generate.generate(run, 0) if case.stage == "generate" else score.score(run, 0)
    wall = time.perf_counter() - started
    batches = -(-manifest.count // case.batch)
    return manifest.count / wall, batches * model_s / wall


def measure_loader(case: Case, images: int, step_s: float, workers: int | None) -> tuple[float, float]:
    """(images/s, step seconds / wall seconds) of one epoch of MoCo v2 batches over one shard."""
    from synthvision.methods.pretraining.data import epoch_batches, moco_v2_transform, synthetic_examples

    run = run_for(case, images, 0.0, None)
    manifests = [generate.generate(run, 0)]
    views = [moco_v2_transform(224)] * 2
    count = 0
    started = time.perf_counter()
    examples = partial(synthetic_examples, run.storage, manifests, 0, 0, 0)
    for _, labels in epoch_batches(examples, case.batch, views, cpu_workers(workers), pin=False):
        time.sleep(step_s)  # the training step
        count += len(labels)
    wall = time.perf_counter() - started
    return count / wall, -(-count // case.batch) * step_s / wall


def measure_short_shards(case: Case, shard_size: int, shards: int, turn: bool, in_flight: int) -> tuple[float, float]:
    """(images/s, model seconds / wall seconds) of `shards` shards of `shard_size`, `in_flight` at once
    and one model place, held for the model's turn (`turn`) or for the whole shard."""
    run = run_for(case, shard_size * shards, case.model_s, None, shard_size)
    place = threading.Semaphore(1)

    @contextmanager
    def slot():
        with place:
            yield

    def one(index: int) -> int:
        if turn:
            manifest, _ = ensure(run, case.stage, index, slot=slot)
        else:
            with slot():
                manifest, _ = ensure(run, case.stage, index)
        return manifest.count

    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        counts = list(pool.map(one, range(run.plan.num_shards)))
    wall = time.perf_counter() - started
    batches = sum(-(-count // case.batch) for count in counts)
    return sum(counts) / wall, batches * case.model_s / wall


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The median images/s and the median busy share of repeated runs."""
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def median(case: Case, images: int, model_s: float, workers: int | None, repeats: int) -> tuple[float, float]:
    return medians([measure(case, images, model_s, workers) for _ in range(repeats)])


def format_costs(repeats: int) -> list[str]:
    rows = []
    for resolution in (256, 512):
        image = texture(1, resolution)
        for encoding in (
            ImageEncoding("png"),
            ImageEncoding("png", png_compress_level=1),
            ImageEncoding("jpg", 95),
            ImageEncoding("webp", 90),
            ImageEncoding("webp-lossless"),
        ):
            times = []
            for _ in range(repeats * 5):
                tick = time.perf_counter()
                data = encoding.encode(image)
                times.append(time.perf_counter() - tick)
            level = f" level {encoding.png_compress_level}" if encoding.format == "png" else ""
            quality = f" quality {encoding.quality}" if encoding.format in ("jpg", "webp") else ""
            rows.append(
                f"| {resolution} px | {encoding.format}{level}{quality} | {statistics.median(times) * 1000:.1f} "
                f"| {len(data) / 1024:.0f} |"
            )
    return rows


def short_shards(args: argparse.Namespace) -> None:
    """The second table: 64-image shards, the model's place held per shard or per turn, against one
    512-image shard measured in the same run."""
    print(f"\n{args.shards} shards of 64 images, one model place; median of {args.repeats} runs\n")
    print("| case | 512-image shard img/s | whole shard, 2 in flight | model's turn, 2 in flight ", end="")
    print("| model's turn, 3 in flight |")
    print("|---|---:|---:|---:|---:|")
    for case in (CASES[0], CASES[3]):
        reference, _ = median(case, 512, case.model_s, None, args.repeats)
        cells = []
        for turn, in_flight in ((False, 2), (True, 2), (True, 3)):
            rate, busy = medians(
                [measure_short_shards(case, 64, args.shards, turn, in_flight) for _ in range(args.repeats)]
            )
            cells.append(f"{rate:.1f} ({rate / reference:.2f}; busy {busy:.2f})")
        print(f"| {case.name} | {reference:.1f} | {' | '.join(cells)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30, help="batches per shard (or epoch); some cases a share")
    parser.add_argument("--shards", type=int, default=8, help="64-image shards in the second table")
    parser.add_argument("--short-shards-only", action="store_true", help="only the second table")
    parser.add_argument("--only", nargs="+", choices=("generate", "score", "pretrain"), help="the first table's stages")
    args = parser.parse_args()
    if args.short_shards_only:
        short_shards(args)
        return
    cores = cpu_workers(None)
    print(f"{os.cpu_count()} cores; default workers {cores}; median of {args.repeats} runs\n")
    print("| case | ideal img/s | CPU limit img/s | serial img/s | pipelined img/s | busy | of target |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in (c for c in CASES if args.only is None or c.stage in args.only):
        batches = max(round(args.batches * case.share), 4)
        images = batches * case.batch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        cpu_rate, _ = median(case, images, 0.0, 0, args.repeats)
        torch.set_num_threads(threads)
        serial, _ = median(case, images, case.model_s, 0, args.repeats)
        pipelined, busy = median(case, images, case.model_s, None, args.repeats)
        ideal, cpu_limit = case.batch / case.model_s, cpu_rate * cores
        print(
            f"| {case.name} | {ideal:.0f} | {cpu_limit:.0f} | {serial:.1f} | {pipelined:.1f} | {busy:.2f} "
            f"| {pipelined / min(ideal, cpu_limit):.2f} |"
        )
    if args.only:
        return
    short_shards(args)
    print("\n| size | format | encode ms per image (one core) | KiB per image |")
    print("|---|---|---:|---:|")
    print("\n".join(format_costs(args.repeats)))


if __name__ == "__main__":
    main()
