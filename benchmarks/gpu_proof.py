"""The paper's models on one GPU, in one command of at most about 8 minutes: what a lent GPU should
be asked first.

    python benchmarks/gpu_proof.py [--batch 16] [--batches 2] [--images 512] [--budget-s 420]
    python benchmarks/gpu_proof.py --tiny        # CPU, tiny models, a few images: the script's own test

GLIDE: the released architecture (GLIDE filtered's base and upsampler, random weights: the speed does
not depend on them) through the GLIDE backend as the generate stage calls it: the 64 px base with 100
respaced steps and classifier-free guidance (conditional and unconditional halves in one batch), then
the 64 -> 256 px upsampler with fast27, in float16 and bfloat16, with and without `torch.compile`.
The first batch of each row (compilation included) is timed apart as its warm-up.

CLIP: open_clip RN50 and ViT-B-32 (random weights) scoring one shard of --images real 256 px PNG and
JPEG files (the load-test generator's textures, encoded as the generate stage writes them) through
the score stage (`stages.score.score`: tar reading, decoding, preprocessing in worker threads, the
model, the scores file and the manifest), at the config's default dtype (float16 autocast on CUDA).

Columns: images/s over the timed batches (or the shard); the model's seconds per batch; *busy*: time
inside the model's calls (CUDA events recorded around each call on a GPU, wall clock on a CPU) over
the wall time; peak GPU memory allocated by torch (`max_memory_allocated`). A GLIDE row that would
start after 3/4 of --budget-s, or a CLIP row after all of it, is skipped and listed as such.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from synthvision.core.config import parse_config
from synthvision.core.data_config import GeneratorConfig
from synthvision.models.clip import load_clip
from synthvision.models.generators.glide.backend import GlideGenerator, GlideModels
from synthvision.models.generators.glide.model import RELEASED_BASE, RELEASED_UPSAMPLER
from synthvision.models.generators.glide.tiny import build_tiny_glide, random_glide, tiny_vocabulary
from synthvision.models.generators.glide.tokenizer import GlideTokenizer
from synthvision.run import Run
from synthvision.stages import generate, score
from synthvision.stages.units import ensure

PROMPTS = ["a photo of a sandal", "a photo of a bag", "a black and white photo of a sneaker", "a photo of a coat"]


@dataclass
class ModelClock:
    """Seconds spent inside a model's calls. On a GPU, a pair of CUDA events around each call: their
    elapsed time is what the GPU's stream spent between them, however far the CPU ran ahead."""

    device: torch.device
    pairs: list[tuple[object, object]] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    @contextmanager
    def call(self) -> Iterator[None]:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.pairs.append((start, end))
        else:
            tick = time.perf_counter()
            yield
            self.wall.append(time.perf_counter() - tick)

    def seconds(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return sum(start.elapsed_time(end) for start, end in self.pairs) / 1000
        return sum(self.wall)

    def reset(self) -> None:
        self.pairs.clear()
        self.wall.clear()


class Timed(torch.nn.Module):
    """A GLIDE UNet whose calls the clock times (the UNet itself may be compiled: the clock stays
    outside the compiled graph)."""

    def __init__(self, inner: torch.nn.Module, clock: ModelClock):
        super().__init__()
        self.inner, self.arch, self.clock = inner, inner.arch, clock

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        with self.clock.call():
            return self.inner(*args, **kwargs)


def device() -> torch.device:
    """The first GPU where there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def peak_gib() -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if torch.cuda.is_available() else "-"


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def glide_models(tiny: bool) -> GlideModels:
    """The released architectures with random weights (or the tiny ones). The tokenizer is the tiny
    byte-level one: its ids are valid for the released 50,257-token embedding, and a prompt's length
    in tokens does not change the model's work (the text context is always padded to 128)."""
    if tiny:
        return GlideModels(*build_tiny_glide())
    return GlideModels(
        random_glide(RELEASED_BASE, 0), random_glide(RELEASED_UPSAMPLER, 1), GlideTokenizer(*tiny_vocabulary())
    )


def glide_row(dtype: str, compile_: bool, args: argparse.Namespace) -> str:
    """One GLIDE row: a warm-up batch, then --batches timed batches of --batch prompts."""
    reset_peak()
    config = GeneratorConfig(
        backend="glide",
        model="tiny" if args.tiny else "released-architecture",
        resolution=64 if args.tiny else 256,
        dtype=dtype,
        compile=compile_,
        batch_size=args.batch,
    )
    generator = GlideGenerator(glide_models(args.tiny), config)
    base, up = ModelClock(generator.device), ModelClock(generator.device)
    generator.base, generator.upsampler = Timed(generator.base, base), Timed(generator.upsampler, up)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch)]

    def batch(number: int) -> None:
        generator.generate(prompts, [number * args.batch + i for i in range(args.batch)])

    started = time.perf_counter()
    batch(0)
    warm_up = time.perf_counter() - started
    base.reset(), up.reset()
    started = time.perf_counter()
    for number in range(1, args.batches + 1):
        batch(number)
    wall = time.perf_counter() - started
    model_s = base.seconds() + up.seconds()
    return (
        f"| GLIDE base 100 steps + guidance, upsampler fast27 | {dtype} | {'on' if compile_ else 'off'} "
        f"| {args.batch} | {args.batch * args.batches / wall:.2f} | {base.seconds() / args.batches:.2f} "
        f"| {up.seconds() / args.batches:.2f} | {model_s / wall:.2f} | {peak_gib()} | {warm_up:.0f} |"
    )


def shard_run(image_format: str, model: str, args: argparse.Namespace) -> Run:
    """A fresh output with one committed shard of --images load-test images in `image_format`, and
    CLIP `model` (no pretrained weights) to score it."""
    config = parse_config(
        {
            "output": tempfile.mkdtemp(prefix="gpu-proof-"),
            "label_space": "cifar10",
            "generator": {"backend": "loadtest", "resolution": 256, "batch_size": 64, "image_format": image_format},
            "clip": {"model": model, "pretrained": None, "batch_size": args.clip_batch},
            "shards": {"images_per_class": -(-args.images // 10), "shard_size": args.images},
        }
    )
    run = Run(config)
    ensure(run, "prompts")
    generate.generate(run, 0)
    return run


def clip_row(model: str, image_format: str, args: argparse.Namespace) -> str:
    """One CLIP row: the shard scored through the score stage (its model loaded before the clock)."""
    reset_peak()
    run = shard_run(image_format, model, args)
    try:
        clip, _ = run.clip_and_head()
        clock, encode = ModelClock(clip.device), clip.encode_pixels

        def timed(pixels: torch.Tensor):
            with clock.call():
                return encode(pixels)

        clip.encode_pixels = timed
        started = time.perf_counter()
        manifest = score.score(run, 0)
        wall = time.perf_counter() - started
        batches = -(-manifest.count // args.clip_batch)
        return (
            f"| CLIP {model} via the score stage | {image_format} | {str(clip.autocast_dtype or torch.float32)[6:]} "
            f"| {args.clip_batch} | {manifest.count / wall:.0f} | {clock.seconds() / batches:.3f} "
            f"| {clock.seconds() / wall:.2f} | {peak_gib()} |"
        )
    finally:
        load_clip.cache_clear()
        shutil.rmtree(run.config.output, ignore_errors=True)


def within_budget(rows: list[tuple[str, Callable[[], str]]], deadline: float) -> Iterator[str]:
    """Each row's line, or, for a row that would start after `deadline` (a perf_counter time), a line
    saying it was skipped."""
    for name, make in rows:
        yield make() if time.perf_counter() < deadline else f"| {name}: skipped, over --budget-s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models and a few images (runs on a CPU)")
    parser.add_argument("--batch", type=int, default=16, help="GLIDE prompts per batch")
    parser.add_argument("--batches", type=int, default=2, help="GLIDE batches timed per row, after one warm-up")
    parser.add_argument("--images", type=int, default=512, help="images in the shard CLIP scores")
    parser.add_argument("--clip-batch", type=int, default=256)
    parser.add_argument("--budget-s", type=float, default=420, help="no row starts after this many seconds")
    args = parser.parse_args()
    started, here = time.perf_counter(), device()
    name = torch.cuda.get_device_name(here) if here.type == "cuda" else "CPU"
    print(f"{name}; torch {torch.__version__}; {'tiny models' if args.tiny else 'released architectures'}\n")
    if here.type == "cuda":
        glide_cases = [(dtype, compile_) for compile_ in (False, True) for dtype in ("float16", "bfloat16")]
    else:  # half precision is slow on CPUs, and compiling there needs a C compiler: the script's own check
        glide_cases = [("float32", False)]
    clip_models = ("tiny-rn", "tiny") if args.tiny else ("RN50", "ViT-B-32")
    print("| model | dtype | compile | batch | images/s | base s/batch | upsampler s/batch | busy | peak GiB ", end="")
    print("| warm-up s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    glide = [(f"GLIDE {d} compile {c}", lambda d=d, c=c: glide_row(d, c, args)) for d, c in glide_cases]
    for line in within_budget(glide, started + args.budget_s * 0.75):
        print(line, flush=True)
    print("\n| model | format | dtype | batch | images/s | model s/batch | busy | peak GiB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    clips = [(f"CLIP {m} {f}", lambda m=m, f=f: clip_row(m, f, args)) for m in clip_models for f in ("png", "jpg")]
    for line in within_budget(clips, started + args.budget_s):
        print(line, flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
