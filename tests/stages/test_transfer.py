"""The transfer stage: the pre-trained backbone and a random init fine-tuned on a real set, through
their flows, and what it shows."""

from __future__ import annotations

import pytest

from tests.helpers import TINY_OPTIM, generated_run

ONE_EPOCH = {**TINY_OPTIM, "epochs": 1}


def real_sets(tmp_path, colours_file) -> tuple[str, str]:
    """A rendered real pool (2 per class) and test set of the colour classes."""
    from synthvision.core.label_spaces import load_label_space
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.storage.store import Storage

    space, storage = load_label_space(str(colours_file)), Storage(str(tmp_path / "pool"))
    return (
        write_colour_test_set(storage, "train", space, 2, 32, seed=3),
        write_colour_test_set(storage, "test", space, 2, 32, seed=4),
    )


@pytest.mark.slow
def test_pretrain_then_transfer_through_their_flows(tmp_path, make_config, colours_file, prefect_server):
    from flows.stages import pretrain_flow, transfer_flow
    from synthvision.stages import transfer

    pool, test = real_sets(tmp_path, colours_file)
    config = make_config(
        pretrain={"arch": "resnet18", "image_size": 32, "optim": ONE_EPOCH},
        transfer={
            "label_space": str(colours_file),
            "train_set": pool,
            "per_class": 1,
            "test_set": test,
            "image_size": 32,
            "optim": ONE_EPOCH,
        },
    )
    run = generated_run(config)
    pretrained = pretrain_flow(config)
    assert pretrained.steps == 3 and pretrained.backbone.endswith("pretrain/backbone.safetensors")
    report = transfer_flow(config)
    assert [row.init for row in report.results] == ["pretrained", "random"]
    assert report.train_images == 3 and all(0 <= row.top1 <= 100 for row in report.results)
    assert transfer.committed(run) == report
    (item,) = transfer.page(run, report, False).items
    assert (item.key, item.table) == (
        "transfer",
        [{"init": r.init, "top1": r.top1, "steps": r.steps} for r in report.results],
    )
