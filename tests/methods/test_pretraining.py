"""ResNet jobs on synthetic shards: MoCo v2 math against hand-computed values, checkpoints that survive
a SIGKILL, BatchNorm freezing, the timm-loadable backbone, and the pretrain / transfer / scratch
stages end to end on tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial

import pytest
import torch
import yaml

from synthvision.core.learning_config import OptimConfig
from synthvision.methods.pretraining.checkpoint import flatten, unflatten
from synthvision.methods.pretraining.data import LabelledImages
from synthvision.methods.pretraining.models import MoCo, backbone_state, build_resnet
from tests.conftest import REPO

TINY_OPTIM = {"epochs": 2, "batch_size": 4, "lr": 0.01, "lr_milestones": [1]}


def test_moco_momentum_update_is_an_exponential_average():
    moco = MoCo("resnet18", dim=4, queue_size=6, momentum=0.9, hidden=8)
    with torch.no_grad():
        for q, k in zip(moco.encoder_q.parameters(), moco.encoder_k.parameters(), strict=True):
            q.fill_(1.0)
            k.fill_(0.0)
    moco.momentum_update()
    assert all(torch.allclose(k, torch.full_like(k, 0.1)) for k in moco.encoder_k.parameters())  # 0.9 * 0 + 0.1 * 1
    moco.momentum_update()
    assert all(torch.allclose(k, torch.full_like(k, 0.19)) for k in moco.encoder_k.parameters())  # 0.9 * 0.1 + 0.1 * 1
    assert not any(k.requires_grad for k in moco.encoder_k.parameters())


def test_moco_queue_replaces_the_oldest_keys_and_wraps():
    moco = MoCo("resnet18", dim=2, queue_size=5, hidden=8)
    keys = torch.arange(12, dtype=torch.float32).reshape(6, 2)  # key i = (2i, 2i + 1)
    moco.enqueue(keys[:2])
    moco.enqueue(keys[2:4])
    assert moco.queue_ptr.item() == 4
    moco.enqueue(keys[4:6])  # slots 4 and 0
    assert moco.queue_ptr.item() == 1
    assert moco.queue.T.tolist() == [[10, 11], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_moco_logits_put_the_positive_first_over_the_temperature():
    moco = MoCo("resnet18", dim=2, queue_size=3, temperature=0.5, hidden=8)
    moco.queue.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]))  # columns: (1,0), (0,1), (-1,0)
    q, k = torch.tensor([[0.6, 0.8]]), torch.tensor([[0.0, 1.0]])
    assert moco.contrastive_logits(q, k)[0].tolist() == pytest.approx(
        [1.6, 1.2, 1.6, -1.2]
    )  # (0.8; 0.6, 0.8, -0.6) / 0.5


def test_a_checkpoint_of_another_config_is_not_resumed_from(tmp_path):
    from synthvision.methods.pretraining.checkpoint import Checkpointer
    from synthvision.storage.store import Storage

    storage = Storage(str(tmp_path / "run"))
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    Checkpointer(storage, "job/ckpt", "hash-a").save(4, model, optimizer, {"step": 4})
    assert Checkpointer(storage, "job/ckpt", "hash-b").restore(model, optimizer) is None
    assert Checkpointer(storage, "job/ckpt", "hash-a").restore(model, optimizer) == {"step": 4}
    Checkpointer(storage, "job/ckpt", "hash-b").save(1, model, optimizer, {"step": 1})  # replaces the other config's
    assert storage.list("job/ckpt") == ["latest.json", "step-00000001.json", "step-00000001.safetensors"]


def test_optimizer_state_round_trips_through_safetensors_and_json():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tensors = {}
    skeleton = flatten(optimizer.state_dict(), "optimizer", tensors)
    import json

    restored = unflatten(json.loads(json.dumps(skeleton)), tensors)
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    assert all(
        torch.equal(restored["state"][i]["momentum_buffer"], original["state"][i]["momentum_buffer"])
        for i in original["state"]
    )


def test_frozen_batch_norm_keeps_its_running_statistics(tmp_path):
    from PIL import Image

    from synthvision.methods.pretraining.jobs import Job, train_supervised
    from synthvision.storage.store import Storage

    images = [Image.new("RGB", (16, 16), (40 * i, 255 - 30 * i, 90)) for i in range(6)]
    data = LabelledImages(images, torch.tensor([0, 1, 2] * 2).numpy())
    for mode, changed in (("frozen", False), ("train", True)):
        torch.manual_seed(0)
        model = build_resnet("resnet18", 3)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        job = Job(Storage(str(tmp_path / mode)), "job", OptimConfig(**TINY_OPTIM), 16, 0, 100, torch.device("cpu"))
        train_supervised(job, model, real=data, batch_norm=mode)
        after = model.state_dict()
        stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
        assert any(not torch.equal(before[k], after[k]) for k in stats) is changed, mode
        assert not torch.equal(before["conv1.weight"], after["conv1.weight"])  # the weights trained either way


def test_exported_backbone_loads_into_timm():
    import timm

    torch.manual_seed(0)
    moco = MoCo("resnet18", dim=8, queue_size=8, hidden=16)
    timm_model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    timm_model.load_state_dict(backbone_state(moco), strict=True)
    assert torch.equal(timm_model.conv1.weight, moco.encoder_q.conv1.weight)


def test_a_backbone_initialises_both_moco_encoders_and_a_wrong_one_is_refused():
    from safetensors.torch import save

    from synthvision.core.errors import DataError
    from synthvision.methods.pretraining.jobs import load_backbone

    torch.manual_seed(1)
    source = build_resnet("resnet18", 10)
    moco = MoCo("resnet18", dim=8, queue_size=8, hidden=16)
    load_backbone(save(backbone_state(source)), moco, "test")
    assert torch.equal(moco.encoder_q.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(moco.encoder_k.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    with pytest.raises(DataError, match="wrong.safetensors does not fit this architecture"):
        load_backbone(
            save(backbone_state(build_resnet("resnet34", 10))), build_resnet("resnet18", 3), "wrong.safetensors"
        )


KILL_AT_STEP_3 = """
import os, signal, sys
import torch
torch.set_num_threads(int(sys.argv[2]))  # as in the test process: float sums depend on the thread count
from synthvision.core.config import load_config
from synthvision.stages.pretrain import pretrain
from synthvision.run import Run
kill_at_3 = lambda step: os.kill(os.getpid(), signal.SIGKILL) if step == 3 else None
pretrain(Run(load_config(sys.argv[1])), on_step=kill_at_3)
"""


def _generated_run(config):
    from synthvision.run import Run
    from synthvision.stages.units import ensure

    run = Run(config)
    ensure(run, "prompts")
    for index in range(run.plan.num_shards):
        ensure(run, "generate", index)
    return run


@pytest.mark.slow
def test_killed_pretraining_resumes_from_its_checkpoint_and_matches_an_unbroken_run(tmp_path, make_config):
    from safetensors.torch import load

    from synthvision.stages import pretrain as pretrain_stage

    pretrain = {
        "method": "moco",
        "arch": "resnet18",
        "image_size": 32,
        "optim": TINY_OPTIM,
        "checkpoint_every": 2,
        "moco": {"dim": 8, "queue_size": 8, "mlp_hidden": 16},
    }
    killed_config = make_config(output=tmp_path / "killed", pretrain=pretrain)
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(killed_config.model_dump(mode="json")))
    _generated_run(killed_config)
    process = subprocess.run(
        [sys.executable, "-c", KILL_AT_STEP_3, str(path), str(torch.get_num_threads())],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -9, process.stderr
    killed = _generated_run(killed_config)
    assert killed.storage.list("pretrain/ckpt") == ["latest.json", "step-00000002.json", "step-00000002.safetensors"]
    # resumed with 2 DataLoader workers: the same batches, so the same weights as the unbroken run with none
    killed.config.pretrain.workers = 2
    report = pretrain_stage.pretrain(killed)
    assert (report.resumed_from_step, report.steps) == (2, 6)  # 12 images / 4 = 3 steps per epoch, 2 epochs

    unbroken = _generated_run(make_config(output=tmp_path / "unbroken", pretrain=pretrain))
    assert pretrain_stage.pretrain(unbroken).resumed_from_step is None
    resumed, straight = (load(run.storage.read_bytes("pretrain/backbone.safetensors")) for run in (killed, unbroken))
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in resumed)
    assert pretrain_stage.committed(killed) == report  # committed: read back as the same report


@pytest.mark.slow
def test_scratch_and_transfer_end_to_end(tmp_path, make_config, prefect_server):
    from flows.stages import pretrain_flow, scratch_flow, transfer_flow
    from synthvision.core.label_spaces import load_label_space
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.storage.store import Storage

    colours = tmp_path / "colours.txt"
    space = load_label_space(str(colours))
    pool = write_colour_test_set(Storage(str(tmp_path / "pool")), "train", space, 2, 32, seed=3)
    test = write_colour_test_set(Storage(str(tmp_path / "pool")), "test", space, 2, 32, seed=4)
    optim = {**TINY_OPTIM, "epochs": 1}
    config = make_config(
        pretrain={"arch": "resnet18", "image_size": 32, "optim": optim},
        transfer={
            "label_space": str(colours),
            "train_set": pool,
            "per_class": 1,
            "test_set": test,
            "image_size": 32,
            "optim": optim,
        },
        scratch={
            "arch": "resnet18",
            "image_size": 32,
            "real_train_set": pool,
            "real_per_class": [1, 2],
            "optim": optim,
        },
    )
    _generated_run(config)
    pretrained = pretrain_flow(config)
    assert pretrained.steps == 3 and pretrained.backbone.endswith("pretrain/backbone.safetensors")
    transfer = transfer_flow(config)
    assert [row.init for row in transfer.results] == ["pretrained", "random"]
    assert transfer.train_images == 3 and all(0 <= row.top1 <= 100 for row in transfer.results)
    scratch = scratch_flow(config)
    assert [(row.data, row.images) for row in scratch.results] == [
        ("synthetic", 12),
        ("real-1-per-class", 3),
        ("real-2-per-class", 6),
    ]
    assert scratch.test_images == 9


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
def test_dataloader_workers_give_the_batches_of_one_process(tmp_path):
    """Worker w makes batches w, w + N, ...: with 0, 2 or 3 workers the same tensors in the same order,
    from any resume point, the MoCo views each seeded per image."""
    from synthvision.methods.pretraining.data import Example, epoch_batches, moco_v2_transform
    from synthvision.models.generators.loadtest import texture
    from synthvision.storage.tars import ImageEncoding

    encoded = [ImageEncoding("png").encode(texture(i, 40)) for i in range(11)]

    def examples(skip: int):
        return (Example(data, i % 3, 1000 + i) for i, data in enumerate(encoded) if i >= skip)

    views = [moco_v2_transform(32)] * 2
    for skip in (0, 4):
        runs = [list(epoch_batches(partial(examples, skip), 2, views, workers, pin=False)) for workers in (0, 2, 3)]
        assert [len(run) for run in runs] == [-(-(11 - skip) // 2)] * 3
        for other in runs[1:]:
            for (views_a, labels_a), (views_b, labels_b) in zip(runs[0], other, strict=True):
                assert torch.equal(labels_a, labels_b)
                assert all(torch.equal(a, b) for a, b in zip(views_a, views_b, strict=True))
        assert not torch.equal(runs[0][0][0][0], runs[0][0][0][1])  # two views: two augmentations
