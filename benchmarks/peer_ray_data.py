"""synthvision's stages against Ray Data, the engine a team would reach for instead, on the same
simulated work, in one run, at 1 and at 2 cores.

    pip install -e '.[bench]'                    # Ray Data: a benchmark-only dependency
    python benchmarks/peer_ray_data.py [--images 512] [--repeats 3] [--cores 1 2]

The model is simulated as in gpu_utilisation.py (a sleep releases the GIL as a GPU sync does):
  generate   200 ms per batch of 16 images at 256 px, written as PNG into a WebDataset tar
  score      50 ms per batch of 64, after open_clip RN50's preprocessing (224 px bicubic, centre crop)
             of the PNGs of one tar; features written out
synthvision: the stage functions (`stages.generate.generate`, `stages.score.score`) on one shard of
--images, on local storage, default workers. Ray Data: an idiomatic pipeline, the model in an actor
pool of one (one GPU), CPU work in tasks around it (PNG encoding in `write_webdataset`'s,
decoding in `read_webdataset`'s, resizing in `map_batches` tasks), a uint8 hand-off normalised in
the actor. Each side runs in its own process pinned with `taskset` to the first N cores (Ray told
`num_cpus=N`); images/s is the median of --repeats, wall time from the first input to the last byte
written (Ray's start-up not counted).

The pre-training loader: one epoch of MoCo v2 batches (two 224 px views per image, each with its own
seeded augmentation) over the same 512 PNGs, each step of 64 followed by a simulated training step
of 500 ms. synthvision: `pretraining.data.epoch_batches` (DataLoader worker processes, default
count). Ray Data: `read_webdataset` (decoding in its read tasks), the same two transforms in
`map_batches` CPU tasks, and `iter_torch_batches` feeding the training loop, as Ray Train's ingest
does; wall time from the first batch asked for to the last step's end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GENERATE = {"resolution": 256, "batch": 16, "model_s": 0.2}
SCORE = {"batch": 64, "model_s": 0.05, "size": 224}
PRETRAIN = {"batch": 64, "step_s": 0.5, "size": 224}
STAGES = ("generate", "score", "pretrain")


def synthvision_side(stage: str, images: int) -> float:
    """images/s of one shard through the library's stage function (gpu_utilisation.py's setup)."""
    import gpu_utilisation

    from synthvision.stages import generate, score

    case = next(c for c in gpu_utilisation.CASES if c.stage == stage)
    if stage == "pretrain":
        return gpu_utilisation.measure_loader(case, images, PRETRAIN["step_s"], None)[0]
    run = gpu_utilisation.run_for(case, images, case.model_s, None)
    started = time.perf_counter()
    manifest = generate.generate(run, 0) if stage == "generate" else score.score(run, 0)
    return manifest.count / (time.perf_counter() - started)


class SimulatedGenerator:
    """The load-test generator's work in a Ray actor: the model's time, then uint8 images."""

    def __init__(self) -> None:
        from synthvision.models.generators.loadtest import TEXTURES, texture

        self.textures = [np.asarray(texture(i, GENERATE["resolution"])) for i in range(TEXTURES)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(GENERATE["model_s"])
        images = np.stack([self.textures[seed % len(self.textures)] for seed in batch["seed"]])
        return {"__key__": batch["__key__"], "png": images}  # write_webdataset encodes a png column


def preprocess(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """open_clip RN50's resize (shorter side to 224, bicubic) and centre crop of the decoded images,
    kept as uint8."""
    from PIL import Image

    size, crops = SCORE["size"], []
    for pixels in batch["png"]:
        image = Image.fromarray(pixels)
        scale = size / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        crops.append(np.asarray(image.crop((left, top, left + size, top + size))))
    return {"__key__": batch["__key__"], "pixels": np.stack(crops)}


class SimulatedClip:
    """CLIP in a Ray actor: normalise the uint8 batch as open_clip does, the model's time, features."""

    MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = (batch["pixels"].astype(np.float32) / 255.0 - self.MEAN) / self.STD
        time.sleep(SCORE["model_s"])
        return {"__key__": batch["__key__"], "feature": pixels.mean(axis=(1, 2))}


def moco_views(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Two MoCo v2 views of each decoded image, as the library's loader makes them (one seed per
    image and view), as uint8 arrays: what its workers hand the training step."""
    from PIL import Image

    from synthvision.core.hashing import derive_seed
    from synthvision.methods.pretraining.data import moco_v2_transform, seeded

    transform = moco_v2_transform(PRETRAIN["size"])
    keys = batch["__key__"]
    pairs = [(Image.fromarray(pixels), derive_seed(0, 0, key)) for pixels, key in zip(batch["png"], keys, strict=True)]
    views = {
        f"view{v}": np.stack([seeded(transform, image, derive_seed(seed, v)).numpy() for image, seed in pairs])
        for v in range(2)
    }
    return {**views, "cls": batch["cls"]}


def ray_loader(images: int, work: Path) -> float:
    """images/s of one epoch of the pre-training loader's batches through Ray Data, a training step
    simulated per batch."""
    import gpu_utilisation
    import ray

    from synthvision.stages import generate

    case = next(c for c in gpu_utilisation.CASES if c.stage == "pretrain")
    run = gpu_utilisation.run_for(case, images, 0.0, None)
    manifest = generate.generate(run, 0)
    shard = work / "shard.tar"
    with run.storage.open(manifest.data_file) as source, shard.open("wb") as target:
        shutil.copyfileobj(source, target)
    dataset = ray.data.read_webdataset(str(shard)).map_batches(moco_views, batch_size=PRETRAIN["batch"], num_cpus=1)
    count, started = 0, time.perf_counter()
    for batch in dataset.iter_torch_batches(batch_size=PRETRAIN["batch"]):
        time.sleep(PRETRAIN["step_s"])  # the training step
        count += len(batch["cls"])
    return count / (time.perf_counter() - started)


def ray_side(stage: str, images: int, cores: int, work: Path) -> float:
    """images/s of the same shard through a Ray Data pipeline."""
    import ray

    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, object_store_memory=1 << 30)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if stage == "pretrain":
        rate = ray_loader(images, work)
        ray.shutdown()
        return rate
    items = [{"__key__": f"{i:08d}", "seed": i} for i in range(images)]
    blocks = max(1, images // 64)  # blocks of 64 rows: a task per 4 model batches, a tar per block
    if stage == "score":  # its input: the generated images, written before the timing starts
        generated = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            SimulatedGenerator, batch_size=GENERATE["batch"], concurrency=1, num_cpus=0
        )
        generated.write_webdataset(str(work / "shards"))
    started = time.perf_counter()
    if stage == "generate":
        generated = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            SimulatedGenerator, batch_size=GENERATE["batch"], concurrency=1, num_cpus=0
        )
        generated.write_webdataset(str(work / "out"))  # PNG encoding in the write tasks
    else:
        shards = ray.data.read_webdataset(str(work / "shards"))  # PNG decoded in the read tasks
        # the model's actor holds no CPU slot (it stands for a GPU: the CPUs are the tasks'); that also keeps
        # Ray from fusing the CPU tasks into it
        dataset = shards.map_batches(preprocess, batch_size=SCORE["batch"], num_cpus=1)
        clip = dataset.map_batches(SimulatedClip, batch_size=SCORE["batch"], concurrency=1, num_cpus=0)
        clip.write_parquet(str(work / "out"))
    rate = images / (time.perf_counter() - started)
    ray.shutdown()
    return rate


def one(side: str, stage: str, images: int, cores: int) -> float:
    """One measurement in a process pinned to the first `cores` cores."""
    work = Path(tempfile.mkdtemp(prefix="peer-ray-data-"))
    try:
        command = [sys.executable, __file__, "--measure", side, stage, str(images), str(cores), str(work)]
        result = subprocess.run(
            ["taskset", "-c", ",".join(str(c) for c in range(cores)), *command],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(cores)},
            timeout=900,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{side} {stage} at {cores} core(s) failed:\n{result.stderr[-3000:]}")
        return float(json.loads(result.stdout.strip().splitlines()[-1])["images_per_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        side, stage, images, cores, work = args.measure
        rate = (
            synthvision_side(stage, int(images))
            if side == "synthvision"
            else ray_side(stage, int(images), int(cores), Path(work))
        )
        print(json.dumps({"images_per_s": rate}))
        return

    print(f"{args.images} images, median of {args.repeats}; images/s")
    print("| stage | cores | synthvision | Ray Data | synthvision / Ray Data |\n|---|---:|---:|---:|---:|")
    for stage in args.stages:
        for cores in args.cores:
            ours, theirs = (
                statistics.median(one(side, stage, args.images, cores) for _ in range(args.repeats))
                for side in ("synthvision", "ray")
            )
            print(f"| {stage} | {cores} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |", flush=True)


if __name__ == "__main__":
    main()
