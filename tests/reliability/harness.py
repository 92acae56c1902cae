"""The reliability suite's machinery: run the real CLI in a process that can be SIGKILLed at a named
failpoint, and check a run's output from a reader's side.

Each CLI process is forked from a multiprocessing fork server that has already imported torch,
Prefect and the models' libraries (8-9 s per fresh interpreter on 2 cores): a kill-and-rerun then
costs only the work itself, so the suite can afford dozens of kills.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import signal
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from synthvision.core import failpoints
from synthvision.core.manifest import Manifest
from synthvision.run import Run
from synthvision.stages import generate, score
from synthvision.storage.store import Storage

PRELOAD = [
    "flows.cli",
    "flows.synthesize",
    "flows.stages",
    "synthvision.run",
    "synthvision.models.generators.diffusers_backend",
    "synthvision.models.clip",
    "synthvision.models.sentences",
    "synthvision.stages.pretrain",
    "s3fs",
]
KILLED = -9  # multiprocessing's exit code for a process ended by SIGKILL


@dataclass
class Tally:
    """What the suite did, for its summary line."""

    kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    bad_inputs: int = 0
    operations: Counter[str] = field(default_factory=Counter)  # what operators meet: signals, restarts, ...
    samples_lost: int = 0
    duplicates: int = 0

    def line(self) -> str:
        faults = sum(self.faults.values())
        detail = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        operations = ", ".join(f"{kind} {n}" for kind, n in sorted(self.operations.items()))
        return (
            f"reliability: kill points survived {self.kills}, faults injected {faults}"
            f"{f' ({detail})' if detail else ''}, bad inputs tried {self.bad_inputs}, "
            f"{f'operations survived: {operations}, ' if operations else ''}"
            f"samples lost {self.samples_lost}, duplicates {self.duplicates}"
        )


TALLY = Tally()


def _cli(argv: list[str], env: dict[str, str], log: str) -> None:
    """A forked child: the `synthvision` command with `argv`, its output to `log`."""
    os.environ.update(env)
    # as a command typed in a terminal gets it, whatever pytest was started from (a background job
    # of a script ignores Ctrl-C, and its children inherit that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(log, "ab") as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
    sys.argv = ["synthvision", *argv]
    from flows.cli import main

    main()


class Launcher:
    """Runs `synthvision ...` in forked processes that share one set of imports."""

    def __init__(self, logs: Path):
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.logs = logs
        self.count = 0

    def start(self, argv: list[str], kill_at: str | None = None, env: dict[str, str] | None = None):
        self.count += 1
        log = self.logs / f"cli-{self.count:03d}.log"
        # the fork server's environment is that of its start: pass on the credentials set since
        credentials = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
        child_env = {**credentials, **(env or {}), **({failpoints.ENV: kill_at} if kill_at else {})}
        process = self.context.Process(target=_cli, args=(argv, child_env, str(log)))
        process.start()
        process.log = log
        return process

    def run(
        self, argv: list[str], kill_at: str | None = None, env: dict[str, str] | None = None, timeout: float = 300
    ) -> int:
        """Run to the end (or to the kill); the exit code (KILLED if the failpoint fired)."""
        process = self.start(argv, kill_at, env)
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            raise AssertionError(f"synthvision {' '.join(argv)} hung; log {process.log}:\n{tail(process.log)}")
        return process.exitcode


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def tar_keys(data: bytes) -> list[str]:
    """Sample keys in a whole tar (tarfile raises on a truncated one)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = [member.name for member in tar]
    return sorted({name.split(".")[0] for name in names})


def check_visible(storage: Storage) -> None:
    """What a reader can see after any kill: every manifest's data file is there, whole, with the
    manifest's size and sha256; every tar under a final name is a whole tar."""
    for stage_dir in ("shards", "scores"):
        for name in storage.list(stage_dir, ".manifest.json"):
            manifest = Manifest.from_json(storage.read_bytes(f"{stage_dir}/{name}").decode())
            data = storage.read_bytes(manifest.data_file)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (manifest.bytes, manifest.sha256), (
                f"{name}: data file does not match"
            )
    for name in storage.list("shards", ".tar"):
        tar_keys(storage.read_bytes(f"shards/{name}"))


def temporaries(storage: Storage) -> list[str]:
    return [path for path in storage.fs.find(storage.root) if ".tmp-" in path]


def check_complete(run: Run) -> None:
    """A finished run: exactly the planned keys, once each, in tars and in scores; tallies losses."""
    check_visible(run.storage)
    run.refresh_plan()  # the top-up rounds the runs recorded
    planned, found, scored = [], [], []
    for index in range(run.plan.num_shards):
        spec = run.plan.shard(index)
        planned += [sample.key for sample in spec.samples]
        manifest = generate.committed(run, index)
        assert manifest is not None, f"{spec.name} not committed"
        found += tar_keys(run.storage.read_bytes(manifest.data_file))
        scores = score.committed(run, index)
        assert scores is not None, f"{spec.name} not scored"
        scored += pq.read_table(io.BytesIO(run.storage.read_bytes(scores.data_file)))["key"].to_pylist()
    lost = len(set(planned) - set(found)) + len(set(planned) - set(scored))
    duplicates = (len(found) - len(set(found))) + (len(scored) - len(set(scored)))
    TALLY.samples_lost += lost
    TALLY.duplicates += duplicates
    assert sorted(found) == sorted(planned) == sorted(scored), (
        f"lost {lost}, duplicates {duplicates}, unplanned {set(found) - set(planned)}"
    )
    assert run.commits.has_report("train")
    assert not temporaries(run.storage)  # what killed writes left, the next run cleared
