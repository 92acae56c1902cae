"""Generation throughput: the generate flow against a bare sampling loop, and per-shard overhead.

    python benchmarks/generation_throughput.py [--shards 8] [--shard-size 32] [--steps 10] [--resolution 64]
    python benchmarks/generation_throughput.py --backend glide [--glide-steps 10 5]

Measurements on the same in-process model (loaded once, before any timing): the tiny diffusers
pipeline, or with --backend glide the tiny GLIDE (16 px base with guidance, 64 px upsampler; its
respacing from --glide-steps, base then upsampler):
  bare loop       generator calls with the flow's batch size and seeds, images kept in memory
  generate flow   the Prefect flow on a fresh output: PNG encoding, tar writing, sha256, manifests,
                  one task run per shard (embedded Prefect server, already started)
Goal: flow images/s >= 0.97 x bare loop. Orchestration cost alone: orchestration_overhead.py.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import embedded_prefect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", choices=["tiny", "glide"], default="tiny")
    parser.add_argument("--glide-steps", type=int, nargs=2, default=[10, 5], metavar=("BASE", "UPSAMPLER"))
    parser.add_argument(
        "--database", choices=embedded_prefect.DATABASES, default="sqlite", help="the embedded server's database"
    )
    args = parser.parse_args()
    if args.backend == "glide":
        generator_section = {
            "backend": "glide",
            "model": "tiny",
            "resolution": 64,
            "batch_size": args.batch_size,
            "glide": {"base_respacing": str(args.glide_steps[0]), "upsample_respacing": str(args.glide_steps[1])},
        }
        described = f"tiny GLIDE, {args.glide_steps[0]} + {args.glide_steps[1]} steps, 16 -> 64 px"
    else:
        generator_section = {
            "backend": "tiny",
            "steps": args.steps,
            "resolution": args.resolution,
            "batch_size": args.batch_size,
        }
        described = f"tiny diffusers model, {args.steps} steps, {args.resolution}px"
    embedded_prefect.start(args.database)  # before the imports below: Prefect reads its settings when imported

    from flows.stages import generate_flow, prompts_flow
    from synthvision.core.config import parse_config
    from synthvision.models.generators import load_generator
    from synthvision.run import open_run
    from synthvision.stages import generate

    root = tempfile.mkdtemp(prefix="bench-gen-")
    classes = os.path.join(root, "classes.txt")
    with open(classes, "w") as handle:
        handle.write("red\ngreen\nblue\nyellow\n")

    def config(workers: int, output: str):
        return parse_config(
            {
                "run_name": "bench",
                "output": output,
                "label_space": classes,
                "generator": generator_section,
                "shards": {"images_per_class": args.shards * args.shard_size // 4, "shard_size": args.shard_size},
                "orchestration": {"max_workers": workers, "gpu_slots": workers},  # one GPU slot per worker
            }
        )

    base = config(1, os.path.join(root, "bare"))
    prompts_flow(base)
    run = open_run(base)
    generator = load_generator(base.generator)
    generator.generate(["warm up"], [0])
    images = run.plan.num_images

    started = time.perf_counter()
    for index in range(run.plan.num_shards):
        samples = run.plan.shard(index).samples
        for start in range(0, len(samples), args.batch_size):
            batch = samples[start : start + args.batch_size]
            generator.generate([run.prompts[s.prompt_id].text for s in batch], [s.seed for s in batch])
    bare = time.perf_counter() - started

    rows = [(f"bare {args.backend} loop", "-", bare, images / bare, 1.0, bare)]
    for workers in args.workers:
        cfg = config(workers, os.path.join(root, f"flow-{workers}"))
        prompts_flow(cfg)
        started = time.perf_counter()
        summary = generate_flow(cfg)
        elapsed = time.perf_counter() - started
        assert summary.done_now == run.plan.num_shards
        manifests = [generate.committed(open_run(cfg), index) for index in range(run.plan.num_shards)]
        model = sum(manifest.timings["model_s"] for manifest in manifests)
        rows.append(("generate flow", workers, elapsed, images / elapsed, bare / elapsed, model))

    print(
        f"\n{images} images = {run.plan.num_shards} shards x {args.shard_size}, {described}, batch "
        f"{args.batch_size}, {os.cpu_count()} CPU cores, Prefect on {args.database}\n"
    )
    print(f"| {'path':<22} | {'workers':>7} | {'seconds':>8} | {'images/s':>8} | {'vs bare':>7} | {'model s':>8} |")
    print(f"|{'-' * 24}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 10}|")
    for name, workers, seconds, rate, ratio, model in rows:
        print(f"| {name:<22} | {workers:>7} | {seconds:>8.2f} | {rate:>8.1f} | {ratio:>6.3f}x | {model:>8.2f} |")
    print("(model s: seconds inside generator calls, summed over shards; with 2 workers they overlap)")


if __name__ == "__main__":
    main()
