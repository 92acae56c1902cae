"""Many runs, one Prefect server: three `synthvision run` commands on three outputs and a fourth on an
output one of them writes, all at once, against one `prefect server start` on PostgreSQL (as README
asks at scale) and one GPU limit. The limit is never exceeded, the runs that find it full wait for a
slot, the fourth waits for the output's lock, and every run ends with exactly its planned keys."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO
from tests.loopback import PrefectServer, postgres
from tests.reliability.harness import TALLY, check_complete, tail
from tests.reliability.test_bad_inputs import write_config
from tests.reliability.test_operations import run_of, unfinished

pytestmark = pytest.mark.slow
LIMIT = "gpu-shared"
SLOTS = 2  # what the first run creates the limit with: one per local worker


@pytest.fixture
def server_on_postgres(tmp_path):
    with postgres(tmp_path / "postgres") as database:
        server = PrefectServer(tmp_path / "prefect-home", database=database).start()
        try:
            yield server
        finally:
            server.stop()


class SlotWatch:
    """Reads the GPU limit's active slots from the server ten times a second, in a thread."""

    def __init__(self, api: str):
        self.api, self.seen, self._stop = api, [], threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        from prefect import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api}), get_client(sync_client=True) as client:
            while not self._stop.wait(0.1):
                try:
                    self.seen.append(client.read_global_concurrency_limit_by_name(LIMIT).active_slots)
                except ObjectNotFound:  # no run has created it yet
                    continue

    def __enter__(self) -> SlotWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_three_runs_and_a_fourth_on_a_busy_output_share_one_server_and_one_gpu_limit(
    server_on_postgres, tmp_path, colours_file
):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = server_on_postgres
    configs = [
        write_config(
            tmp_path,
            str(tmp_path / f"output-{number}"),
            colours_file,
            name=f"config-{number}.yaml",
            run_name=f"shared-{number}",
            # 6 shards of one 2 s batch each: 3 runs x 2 workers want 6 slots of the limit's 2
            generator={"backend": "loadtest", "seconds_per_batch": 2, "batch_size": 2},
            shards={"images_per_class": 4, "shard_size": 2},
            orchestration={"max_workers": 2, "gpu_limit": LIMIT},
        )
        for number in range(3)
    ]
    commands = [*configs, configs[0]]  # the fourth on the first's output
    logs = [tmp_path / f"command-{number}.log" for number in range(len(commands))]
    with SlotWatch(server.api) as slots:
        processes = []
        for config, log_path in zip(commands, logs, strict=True):
            with open(log_path, "w") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "flows.cli", "run", config],
                        cwd=REPO,
                        env={**server.env, "PREFECT_LOGGING_LEVEL": "INFO"},  # a user's default
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        codes = [process.wait(600) for process in processes]
    texts = [tail(path, 200_000) for path in logs]
    assert codes == [0, 0, 0, 0], "\n\n".join(f"{log}:\n{text[-3000:]}" for log, text in zip(logs, texts, strict=True))
    assert not any("Traceback" in text for text in texts)

    # the limit was full while runs wanted more, and never over: the server counted at most its slots
    assert max(slots.seen) == SLOTS, sorted(set(slots.seen))
    assert any(f"for a slot of GPU limit '{LIMIT}'" in text for text in texts)
    # one of the two commands on the first output waited for the other's lock, then found it done
    waited = [f"output {tmp_path / 'output-0'} is being written by another run" in text for text in texts]
    assert waited[0] != waited[3] and not any(waited[1:3]), waited

    for config in configs:
        check_complete(run_of(config))
    with temporary_settings({PREFECT_API_URL: server.api}):
        assert unfinished("shared-") == []
    assert not (server.home / "prefect.db").exists()  # the server kept it all in PostgreSQL, not SQLite
    TALLY.operations["runs sharing one server (PostgreSQL)"] += len(commands)
