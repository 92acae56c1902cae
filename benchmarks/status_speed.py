"""`status` time over many committed shards, read from storage alone.

    python benchmarks/status_speed.py [--shards 10000] [--s3]

Writes a run with N committed shards (tiny data files, real manifests; no model involved) and the
wave indexes the generate flow writes (one per `shards_per_flow_run` shards), then times
`Run.status()`: one listing per stage folder, the index objects, and a read of any manifest no index
vouches for. With --s3 the run lives on a loopback moto_server (started here;
`pip install -e '.[test]'`), so every read is an HTTP request. Goal: seconds, not minutes, for
10,000 shards. The table also times status without the indexes (every manifest read) and the floor
of that: the same listing and a plain batched read of every manifest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from synthvision.core.config import parse_config
from synthvision.core.manifest import INDEX_SUFFIX, Manifest
from synthvision.core.planning import shard_name
from synthvision.run import Run
from synthvision.stages.generate import SHARDS_DIR, shard_tar_path
from synthvision.stages.units import ensure


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [shutil.which("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    return server, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--s3", action="store_true", help="run against a loopback moto_server")
    args = parser.parse_args()

    server = None
    output, options = os.path.join(tempfile.mkdtemp(prefix="bench-status-"), "run"), {}
    if args.s3:
        import s3fs

        server, endpoint = start_moto()
        options = {"endpoint_url": endpoint}
        s3fs.S3FileSystem(**options).mkdir("bench")
        output = "s3://bench/run"
    # cifar100: 100 classes x (shards / 100) images, one image per shard
    config = parse_config(
        {
            "output": output,
            "storage_options": options,
            "label_space": "cifar100",
            "shards": {"images_per_class": args.shards // 100, "shard_size": 1},
        }
    )
    run = Run(config)
    ensure(run, "prompts")

    def commit(index: int) -> Manifest:
        name = shard_name(index)
        run.storage.write_bytes(shard_tar_path(name), b"tar")
        manifest = Manifest(name, "generate", run.hashes["generate"], "spec", shard_tar_path(name), 1, 3, "sha")
        run.storage.write_manifest(SHARDS_DIR, manifest)
        return manifest

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        manifests = list(pool.map(commit, range(run.num_shards)))
    per_wave = config.orchestration.shards_per_flow_run
    time.sleep(1.1)  # S3 times are whole seconds: an index trusts manifests written before it
    for wave, start in enumerate(range(0, len(manifests), per_wave)):
        run.commits.index("generate", wave, manifests[start : start + per_wave])
    setup = time.perf_counter() - started

    def best_status() -> float:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            rows = run.status()
            timings.append(time.perf_counter() - started)
            assert rows[1].committed == run.num_shards, rows
        return min(timings)

    indexed = best_status()
    run.storage.fs.rm([run.storage.path(f"{SHARDS_DIR}/{name}") for name in run.storage.list(SHARDS_DIR, INDEX_SUFFIX)])
    unindexed = best_status()

    # The floor: one listing and a plain batched read of every manifest, nothing parsed or checked.
    # status / floor near 1 means status costs what the store takes to serve the manifests.
    started = time.perf_counter()
    paths = [
        entry
        for entry in run.storage.fs.ls(run.storage.path(SHARDS_DIR), detail=False, refresh=True)
        if entry.endswith(".manifest.json")
    ]
    run.storage.fs.cat(paths)
    floor = time.perf_counter() - started

    where = "S3 (moto_server, loopback)" if args.s3 else "local disk"
    print("\nstatus s: best of 3; floor: one listing and a plain batched read of every manifest\n")
    print(
        "| storage | shards | write (setup) s | status s, wave indexes | status s, no indexes | floor s | "
        "indexed / floor | shards/s indexed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {where} | {run.num_shards} | {setup:.1f} | {indexed:.2f} | {unindexed:.2f} | {floor:.2f} "
        f"| {indexed / floor:.2f} | {run.num_shards / indexed:,.0f} |"
    )
    if server is not None:
        server.terminate()


if __name__ == "__main__":
    main()
