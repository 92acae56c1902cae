"""A million-image dry run: the real flows at full scale, the models replaced by load-test ones.

    python benchmarks/million_images.py [--shards 1000] [--shard-size 1000] [--resolution 32]
                                        [--database sqlite|postgres]

A plan of `shards x shard-size` images (CIFAR-10's classes, B prompts) goes through the generate flow
(the load-test generator: cheap deterministic images, no model time), the score flow (the load-test
CLIP: decoding and preprocessing to the image size, cheap features) and `status`, in this process
against the embedded Prefect server. Per stage: wall time, the flow process's peak memory (sampled
every 0.2 s, so flat in the number of shards or not), Prefect flow and task runs created, and the
per-shard overhead: wall time per shard less the shard's own work (its manifest's `total_s`) spread
over the flow's workers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import embedded_prefect


class PeakMemory:
    """The process's resident memory, sampled in a thread: its peak over a block."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakMemory:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def count_task_runs(client) -> int:
    """Task runs on the server (the client counts flow runs, not task runs: page through them)."""
    count = 0
    while page := client.read_task_runs(limit=200, offset=count):
        count += len(page)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="orchestration.max_workers")
    parser.add_argument("--database", choices=embedded_prefect.DATABASES, default="sqlite")
    args = parser.parse_args()
    embedded_prefect.start(args.database)  # before the imports below: Prefect reads its settings when imported

    from prefect.client.orchestration import get_client

    from flows.stages import generate_flow, prompts_flow, score_flow
    from synthvision.core.config import parse_config
    from synthvision.run import Run
    from synthvision.stages import generate, score

    images = args.shards * args.shard_size
    config = parse_config(
        {
            "run_name": "million",
            "output": tempfile.mkdtemp(prefix="bench-million-"),
            "label_space": "cifar10",
            "generator": {"backend": "loadtest", "resolution": args.resolution, "batch_size": 100},
            "clip": {"model": f"loadtest:{args.resolution}", "batch_size": 250},
            "shards": {"images_per_class": images // 10, "shard_size": args.shard_size},
            "orchestration": {"max_workers": args.workers, "gpu_limit": None},
        }
    )
    prompts_flow(config)
    client = get_client(sync_client=True)
    run = Run(config)
    print(
        f"\n{images:,} images: {args.shards} shards of {args.shard_size} at {args.resolution} px; "
        f"{args.workers} workers; {os.cpu_count()} cores; Prefect on {args.database}\n"
    )
    print("| stage | wall s | peak memory MiB | flow runs | task runs | s per shard | shard's own s | overhead s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, flow, committed in (
        ("generate", generate_flow, generate.committed),
        ("score", score_flow, score.committed),
    ):
        flows_before, tasks_before = client.count_flow_runs(), count_task_runs(client)
        with PeakMemory() as memory:
            started = time.perf_counter()
            flow(config)
            wall = time.perf_counter() - started
        own = sum(committed(run, i).timings["total_s"] for i in range(args.shards)) / args.shards
        per_shard = wall / args.shards
        print(
            f"| {name} | {wall:.0f} | {memory.peak / 2**20:.0f} | {client.count_flow_runs() - flows_before} "
            f"| {count_task_runs(client) - tasks_before} | {per_shard:.3f} | {own:.3f} "
            f"| {per_shard - own / args.workers:.3f} |"
        )
    with PeakMemory() as memory:
        started = time.perf_counter()
        rows = run.status()
        wall = time.perf_counter() - started
    print(f"| status | {wall:.1f} | {memory.peak / 2**20:.0f} | 0 | 0 | | | |")
    print("\nstatus: " + ", ".join(f"{row.stage} {row.committed}/{row.planned}" for row in rows))


if __name__ == "__main__":
    main()
