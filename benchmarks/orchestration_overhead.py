"""Prefect orchestration cost per shard, from 10 to 2,000 trivial shards.

    python benchmarks/orchestration_overhead.py [--shards 10 100 500 2000] [--database sqlite|postgres]

Each shard holds one 8x8 image from the tiny model with one denoising step, so nearly all of the
time is orchestration: task runs, state reports, cache-key reads, result records, progress
artifacts, waves, and each model task's slot of the `gpu` global concurrency limit. Runs against the
embedded Prefect server on SQLite (Prefect's default) or a throwaway PostgreSQL (`--database postgres`,
needs `pip install -e '.[bench]'`), or against the server `PREFECT_API_URL` names.
For each size: the first pass (everything generated) and the skip pass (everything committed).
Goal: <= 0.5 s per shard, flat as the run grows.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import embedded_prefect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="+", default=[10, 100, 500, 2000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database", choices=embedded_prefect.DATABASES, default="sqlite", help="the embedded server's database"
    )
    args = parser.parse_args()
    embedded_prefect.start(args.database)  # before the imports below: Prefect reads its settings when imported

    from flows.stages import generate_flow, prompts_flow
    from synthvision.core.config import parse_config

    root = tempfile.mkdtemp(prefix="bench-overhead-")
    classes = os.path.join(root, "classes.txt")
    with open(classes, "w") as handle:
        handle.write("red\ngreen\n")
    rows = []
    for shards in args.shards:
        config = parse_config(
            {
                "run_name": f"overhead-{shards}",
                "output": os.path.join(root, str(shards)),
                "label_space": classes,
                "generator": {"backend": "tiny", "steps": 1, "resolution": 8, "batch_size": 1},
                "shards": {"images_per_class": max(shards // 2, 1), "shard_size": 1},
                "orchestration": {"max_workers": args.workers},
            }
        )
        prompts_flow(config)
        passes = []
        for _ in ("first", "skip"):
            started = time.perf_counter()
            generate_flow(config)
            passes.append(time.perf_counter() - started)
        rows.append((shards, *passes))

    print(
        f"\ntrivial shards (1 image, 1 step, 8 px), {args.workers} workers, {os.cpu_count()} CPU cores, "
        f"Prefect on {args.database}\n"
    )
    print("| shards | first pass s | s / shard | skip pass s | s / shard |")
    print("|---:|---:|---:|---:|---:|")
    for shards, first, skip in rows:
        print(f"| {shards} | {first:.1f} | {first / shards:.3f} | {skip:.1f} | {skip / shards:.3f} |")


if __name__ == "__main__":
    main()
