import pytest

from synthvision.core.batching import batched


def test_batched_cuts_a_stream_lazily_with_a_short_last_batch():
    pulled = []

    def stream():
        for item in range(7):
            pulled.append(item)
            yield item

    batches = batched(stream(), 3)
    assert next(batches) == [0, 1, 2] and pulled == [0, 1, 2]  # never more than one batch ahead
    assert list(batches) == [[3, 4, 5], [6]]
    assert list(batched([], 4)) == []


def test_a_batch_size_below_one_is_an_error():
    with pytest.raises(ValueError, match="batch size must be at least 1, not 0"):
        list(batched([1], 0))
