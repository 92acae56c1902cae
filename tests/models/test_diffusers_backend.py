"""The diffusers backend shared by a run's shard threads: calls from several threads at once give
each call the images it would get alone (a pipeline keeps a call's state on itself)."""

from __future__ import annotations

import threading

import numpy as np

from synthvision.core.data_config import GeneratorConfig
from synthvision.models.generators.diffusers_backend import DiffusersGenerator


def test_threads_calling_one_pipeline_at_once_get_the_images_of_calls_made_alone():
    generator = DiffusersGenerator.from_config(
        GeneratorConfig(backend="tiny", steps=2, resolution=32, batch_size=2, device="cpu")
    )
    calls = [([f"a photo of a {name}", "a red square"], [seed, seed + 100]) for seed, name in enumerate("abcdefghij")]
    alone = [[np.asarray(image) for image in generator.generate(*call)] for call in calls]
    together: dict[int, list[np.ndarray]] = {}
    start = threading.Barrier(len(calls))

    def call(index: int) -> None:
        start.wait()
        try:
            together[index] = [np.asarray(image) for image in generator.generate(*calls[index])]
        except Exception as error:  # a corrupted call fails as often as it returns wrong images
            together[index] = [error]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for index, images in enumerate(alone):
        assert len(together[index]) == len(images) and all(
            np.array_equal(a, b) for a, b in zip(together[index], images, strict=True)
        ), f"call {index}: {together[index]!r:.300}"
