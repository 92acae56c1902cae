import random
import threading
import time

import pytest

from synthvision.core.pipelining import cpu_workers, ordered_map


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
