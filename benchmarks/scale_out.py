"""The scale-out rehearsal, timed: README's demo (shrunk by `--images-per-class`) on a Dask cluster of
separate processes (a scheduler and two single-threaded workers, each in its own folder with its own
Prefect home) against the same demo on threads in one process (`max_workers` 2), in the same run,
both writing to an S3 server on loopback and reporting to one `prefect server start`.

    python benchmarks/scale_out.py [--images-per-class 5]

Prints wall time per engine (the `synthvision run` command, start-up included) and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.loopback import DaskCluster, PrefectServer, moto_server  # noqa: E402

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEYID0000000",
    "AWS_SECRET_ACCESS_KEY": "fake",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def demo(env: dict[str, str], sets: list[str]) -> float:
    """Seconds for `synthvision run configs/demo.yaml --set ...` to finish (it must succeed)."""
    command = [sys.executable, "-m", "flows.cli", "run", str(REPO / "configs" / "demo.yaml")]
    command += [part for value in sets for part in ("--set", value)]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-per-class", type=int, default=5)
    args = parser.parse_args()
    import s3fs

    with tempfile.TemporaryDirectory() as folder, moto_server() as endpoint:
        server = PrefectServer(Path(folder) / "prefect").start()
        try:
            env = {**server.env, **CREDENTIALS}
            s3fs.S3FileSystem(endpoint_url=endpoint, key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret="fake").mkdir("bench")
            common = [
                f"storage_options={{endpoint_url: '{endpoint}'}}",
                f"shards.images_per_class={args.images_per_class}",
                "shards.shard_size=10",
            ]
            threads = demo(env, [*common, "run_name=threads", "output=s3://bench/threads"])
            with DaskCluster(Path(folder) / "dask", [env, env]) as cluster:
                dask = demo(
                    env,
                    [
                        *common,
                        "run_name=dask",
                        "output=s3://bench/dask",
                        "orchestration.engine=dask",
                        f"orchestration.dask_address={cluster.address}",
                    ],  # fmt: skip
                )
        finally:
            server.stop()
    images = 10 * args.images_per_class
    print(f"the demo, {images} images in shards of 10, output on S3 (loopback), one Prefect server")
    print(f"{'engine':<44}{'wall s':>8}{'ratio':>8}")
    print(f"{'threads (one process, 2 workers)':<44}{threads:>8.1f}{1.0:>8.2f}")
    print(f"{'dask (scheduler + 2 worker processes)':<44}{dask:>8.1f}{dask / threads:>8.2f}")


if __name__ == "__main__":
    main()
