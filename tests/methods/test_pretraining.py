"""ResNet jobs: MoCo v2 math against hand-computed values, checkpoints of another config, optimizer
state round trips, BatchNorm freezing, the timm-loadable backbone, and DataLoader workers that give
the batches of one process. (The pretrain, transfer and scratch stages: tests/stages/.)"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from synthvision.core.learning_config import OptimConfig
from synthvision.methods.pretraining.checkpoint import flatten, unflatten
from synthvision.methods.pretraining.data import LabelledImages
from synthvision.methods.pretraining.models import MoCo, backbone_state, build_resnet
from tests.helpers import TINY_OPTIM


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


def test_moco_blur_is_pil_s_gaussian_filter_with_a_seeded_radius():
    """MoCo v2's blur (its reference's `moco/loader.GaussianBlur`): PIL's filter, radius uniform in
    (0.1, 2.0) from torch's generator, so a seed fixes it and different seeds differ."""
    from PIL import ImageFilter

    from synthvision.methods.pretraining.data import GaussianBlur, seeded
    from synthvision.models.generators.loadtest import texture

    image = texture(3, 64)
    torch.manual_seed(7)
    radius = float(torch.empty(()).uniform_(0.1, 2.0))
    assert 0.1 <= radius <= 2.0
    blurred = seeded(GaussianBlur(), image, 7)
    assert np.array_equal(np.asarray(blurred), np.asarray(image.filter(ImageFilter.GaussianBlur(radius=radius))))
    assert np.array_equal(np.asarray(seeded(GaussianBlur(), image, 7)), np.asarray(blurred))
    assert not np.array_equal(np.asarray(seeded(GaussianBlur(), image, 8)), np.asarray(blurred))
    assert np.asarray(blurred, dtype=float).std() < np.asarray(image, dtype=float).std()  # a blur smooths


def test_views_leave_their_worker_as_uint8_and_reach_the_model_as_the_whole_pipelines_floats():
    """The uint8 hand-off: a view's scaling and normalisation, run once per batch where the model is,
    give the floats ToDtype and Normalize give per image."""
    from torchvision.transforms import v2

    from synthvision.methods.pretraining.data import MEAN, STD, eval_transform, to_model
    from synthvision.models.generators.loadtest import texture

    images = [texture(i, 40 + 8 * i) for i in range(3)]
    views = torch.stack([eval_transform(32)(image) for image in images])
    assert views.dtype == torch.uint8 and views.shape == (3, 3, 32, 32)
    whole = v2.Compose([v2.Resize(32, antialias=True), v2.CenterCrop(32), v2.ToImage()])
    floats = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    expected = torch.stack([floats(whole(image)) for image in images])
    assert torch.equal(to_model(views, torch.device("cpu")), expected)
