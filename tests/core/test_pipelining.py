import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from synthvision.core.pipelining import WorkerProcesses, cpu_workers, ordered_map

ROOT = Path(__file__).parents[2]


def slow_square(x: int) -> int:
    time.sleep(random.random() * 0.005)  # results finish out of order
    return x * x


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_come_in_the_inputs_order(workers):
    assert list(ordered_map(slow_square, range(50), workers, ahead=7)) == [x * x for x in range(50)]


def test_no_more_than_ahead_items_are_drawn_before_the_consumer_takes_one():
    drawn = []

    def items():
        for x in range(100):
            drawn.append(x)
            yield x

    results = ordered_map(lambda x: x, items(), workers=2, ahead=4)
    assert next(results) == 0
    time.sleep(0.2)
    # the feeder holds at most one drawn item beyond the queue's 4
    assert len(drawn) <= 4 + 2
    results.close()


def test_a_functions_error_is_raised_at_its_item_and_no_thread_outlives_the_iterator():
    before = threading.active_count()

    def fails_at_5(x):
        if x == 5:
            raise ValueError("bad item 5")
        return x

    seen = []
    with pytest.raises(ValueError, match="bad item 5"):
        for value in ordered_map(fails_at_5, range(1000), workers=2, ahead=3):
            seen.append(value)
    assert seen == [0, 1, 2, 3, 4]
    assert threading.active_count() == before


def test_an_error_drawing_the_items_is_raised_in_the_consumers_thread():
    def items():
        yield 1
        yield 2
        raise OSError("connection reset while reading the tar")

    results = []
    with pytest.raises(OSError, match="connection reset"):
        for value in ordered_map(lambda x: x, items(), workers=2, ahead=2):
            results.append(value)
    assert results == [1, 2]


def test_closing_early_stops_the_feeder():
    before = threading.active_count()
    results = ordered_map(lambda x: x, iter(range(10**9)), workers=2, ahead=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    results.close()
    assert threading.active_count() == before


def test_cpu_workers_default_to_the_cores_at_most_eight():
    assert cpu_workers(0) == 0 and cpu_workers(5) == 5
    assert 1 <= cpu_workers(None) <= 8


_given: dict[str, str] = {}  # in a worker process: what its initializer was given


def remember(value: str) -> None:
    _given["value"] = value


def square_with_state(x: int) -> tuple[int, str, int]:
    time.sleep(random.random() * 0.005)
    return x * x, _given["value"], os.getpid()


def die(_: int) -> None:
    os._exit(3)


def test_worker_processes_map_in_order_with_their_initializers_state_and_replace_a_dead_worker():
    processes = WorkerProcesses(2, remember, ("given once",))
    try:
        results = list(ordered_map(square_with_state, range(30), 2, ahead=3, processes=processes))
        assert [result[:2] for result in results] == [(x * x, "given once") for x in range(30)]
        assert os.getpid() not in {result[2] for result in results}
        with pytest.raises(BrokenProcessPool):
            list(ordered_map(die, range(3), 2, ahead=2, processes=processes))
        again = ordered_map(square_with_state, range(3), 2, ahead=2, processes=processes)
        assert [result[0] for result in again] == [0, 1, 4]  # new processes
    finally:
        processes.discard()


def test_worker_processes_exit_when_their_parent_is_killed():
    """SIGKILL gives a pool no chance to stop its workers: they notice the parent is gone."""
    script = (
        "from tests.core.test_pipelining import remember, square_with_state\n"
        "from synthvision.core.pipelining import WorkerProcesses, ordered_map\n"
        "processes = WorkerProcesses(2, remember, ('x',))\n"
        "pids = {r[2] for r in ordered_map(square_with_state, range(20), 2, ahead=4, processes=processes)}\n"
        "print(*pids, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert pids and parent.pid not in pids
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited and waiting for init to reap it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
