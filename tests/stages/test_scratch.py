"""The scratch stage: ResNets from random init on the synthetic shards and on k real images per
class, through its flow, and what it shows."""

from __future__ import annotations

import pytest

from tests.helpers import generated_run
from tests.stages.test_transfer import ONE_EPOCH, real_sets


@pytest.mark.slow
def test_scratch_on_synthetic_and_k_real_per_class_through_its_flow(
    tmp_path, make_config, colours_file, prefect_server
):
    from flows.stages import scratch_flow
    from synthvision.stages import scratch

    pool, _ = real_sets(tmp_path, colours_file)
    scratch_config = {"arch": "resnet18", "image_size": 32, "real_train_set": pool, "real_per_class": [1, 2]}
    config = make_config(scratch={**scratch_config, "optim": ONE_EPOCH})
    run = generated_run(config)
    report = scratch_flow(config)
    assert [(row.data, row.images) for row in report.results] == [
        ("synthetic", 12),
        ("real-1-per-class", 3),
        ("real-2-per-class", 6),
    ]
    assert report.test_images == 9 and scratch.committed(run) == report
    assert report.line().startswith(f"top-1 on {report.test_set} (resnet18): synthetic (12 images) ")
