"""The work per image that holds Python's GIL in the score path and in the pre-training loader: the
part that one process's threads cannot spread over a GPU node's cores.

    pip install -e '.[bench]'                  # py-spy
    python benchmarks/gil_work.py [--images 512] [--rate 1000] [--workers N]

How it is measured: a process prepares one shard of --images 256 px PNGs (the load-test generator's
textures), scores it once (CLIP loaded, decoding processes started) and waits; py-spy attaches to it
and its children and samples every thread --rate times a second, keeping only the samples of a
thread that holds the GIL (`py-spy record --gil --subprocesses`); then the process does the work and
exits. At most one thread of a process holds its GIL at a time, so the samples kept, over the rate,
are the seconds the processes' GILs were held (the profiler stops when the work ends, before the
interpreter's exit). Per image: those seconds over the images, in all processes and in the measured
process alone (the serial part: the workers' processes each have their own GIL). The work: `score`,
the score stage on the shard with the load-test CLIP (no model time: only the CPU work around the
model: reading and hashing the tar, decoding, open_clip RN50's preprocessing, the scores file),
decoding in --workers threads, then in as many processes (`clip.processes`); `pretrain`, an epoch of
MoCo v2 batches (two 224 px views per image) from `epoch_batches` with 2 DataLoader worker processes.
The table also gives the threads (by name: the tar's feeder, the CPU workers, the main thread; a
worker process's apart) and the functions on top of the GIL holders' stacks that took the most
samples, in all processes and in the measured one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent


def prepare_and_work(work: str, images: int, workers: int | None, processes: bool) -> None:
    """The measured process: prepare, say so, wait for the profiler, do the work."""
    sys.path.insert(0, str(HERE))
    from functools import partial

    import gpu_utilisation

    from synthvision.methods.pretraining.data import epoch_batches, moco_v2_transform, synthetic_examples
    from synthvision.stages import score
    from synthvision.stages.units import ensure

    case = next(c for c in gpu_utilisation.CASES if c.stage == ("score" if work == "score" else "pretrain"))
    run = gpu_utilisation.run_for(case, images, 0.0, workers)
    manifests = [ensure(run, "generate", 0)[0]]
    if work == "score":
        run.config.clip.processes = processes
        score.score(run, 0)  # once before measuring: CLIP loaded, decoding processes started
    print("ready", flush=True)
    sys.stdin.readline()  # the profiler is attached
    if work == "score":
        score.score(run, 0)
    else:
        examples = partial(synthetic_examples, run.storage, manifests, 0, 0, 0)
        for _ in epoch_batches(examples, case.batch, [moco_v2_transform(224)] * 2, 2, pin=False):
            pass
    print("done", flush=True)
    sys.stdin.readline()  # the profiler has stopped: the interpreter's exit is not the work's


def measure(
    work: str, images: int, rate: int, workers: int | None = None, processes: bool = False
) -> tuple[float, Counter[str], Counter[str], Counter[str]]:
    """(GIL-held ms per image in all processes; samples by the function on top of the holder's stack,
    in the measured process alone and in all; samples by thread)."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--measure", work, str(images), str(workers), str(processes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "samples.txt"
        command = ["py-spy", "record", "--gil", "--rate", str(rate), "--format", "raw", "--output", str(raw)]
        command += ["--threads", "--nonblocking", "--subprocesses", "--pid", str(child.pid)]
        profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)  # py-spy attaches and starts sampling
        if profiler.poll() is not None:
            raise RuntimeError(f"py-spy could not attach: {profiler.stderr.read()[-2000:]}")
        child.stdin.write("go\n")
        child.stdin.flush()
        if child.stdout.readline().strip() != "done":
            raise RuntimeError(f"the {work} process failed")
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        _, errors = profiler.communicate(timeout=120)
        child.stdin.write("exit\n")
        child.stdin.flush()
        child.wait(timeout=120)
        if not raw.is_file():
            raise RuntimeError(f"py-spy wrote nothing: {errors[-2000:]}")
        tops: Counter[str] = Counter()
        threads: Counter[str] = Counter()
        own: Counter[str] = Counter()  # the measured process's samples, by function
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            process = [f"process {child.pid}:", *(f for f in frames if f.startswith("process "))][-1]  # innermost
            role = thread_role(next((f for f in frames if f.startswith("thread (")), "?"))
            mine, top = process.startswith(f"process {child.pid}:"), frames[-1].split(" (")[0]
            threads[role if mine else f"worker process {role}"] += int(count)
            tops[top] += int(count)
            if mine:
                own[top] += int(count)
    return sum(tops.values()) / rate / images * 1000, own, tops, threads


def thread_role(frame: str) -> str:
    """`thread (123): synthvision-cpu_1` -> `synthvision-cpu`: the threads of one kind together."""
    name = frame.partition(": ")[2] or frame
    return name.rstrip("0123456789").rstrip("_-") or name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--workers", type=int, default=None, help="the score stage's clip.workers (default: cores)")
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        work, images, workers, processes = args.measure
        prepare_and_work(work, int(images), None if workers == "None" else int(workers), processes == "True")
        return
    print(f"{os.cpu_count()} cores; {args.images} images of 256 px; py-spy --gil at {args.rate} samples/s\n")
    print(
        "| work | GIL held, ms per image: all processes | the stage's own process "
        "| by thread (share of samples) | top functions while holding it | the same, in the stage's own process |"
    )
    print("|---|---:|---:|---|---|---|")
    for work, processes, name in (
        ("score", False, "score, worker threads"),
        ("score", True, "score, worker processes"),
        ("pretrain", False, "pretrain loader"),
    ):
        per_image, own, tops, threads = measure(work, args.images, args.rate, args.workers, processes)
        total, own_ms = sum(tops.values()), sum(own.values()) / args.rate / args.images * 1000
        by_thread, by_function, own_functions = (
            ", ".join(f"{name} {count / total:.0%}" for name, count in counter.most_common(4))
            for counter in (threads, tops, own)
        )
        row = f"| {name} | {per_image:.3f} | {own_ms:.3f} | {by_thread} | {by_function} | {own_functions} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
