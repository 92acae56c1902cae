"""The pretrain, transfer and scratch stages of a run: which data, which models, what is reported.
`Run` calls these; each returns its committed report unchanged when one exists for the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import fsspec
import torch

from synthvision.devices import resolve_device
from synthvision.errors import ConfigError, DataError
from synthvision.hashing import derive_seed
from synthvision.label_spaces import load_label_space
from synthvision.pretraining.data import load_labelled
from synthvision.pretraining.jobs import (
    BACKBONE_FILE,
    REPORT_FILE,
    build_moco,
    load_backbone,
    model_top1,
    sample_per_class,
    train_moco,
    train_supervised,
    write_backbone,
)
from synthvision.pretraining.models import build_resnet
from synthvision.stages import stage

if TYPE_CHECKING:
    from synthvision.run import Run

PRETRAIN_DIR, TRANSFER_DIR, SCRATCH_DIR = (stage(name).folder for name in ("pretrain", "transfer", "scratch"))
OnStep = Callable[[int], None] | None


def _commit(run: Run, reldir: str, report: dict[str, Any]) -> dict[str, Any]:
    import json

    run.storage.write_bytes(f"{reldir}/{REPORT_FILE}", json.dumps(report, indent=1).encode("utf-8"))
    return report


def _seed_init(run: Run, *parts: object) -> None:
    """Fix a new model's random init (and MoCo's initial queue) by the run's seed and the job."""
    torch.manual_seed(derive_seed(run.config.seed, "init", *parts))


def _section(run: Run, name: str):
    section = getattr(run.config, name)
    if section is None:
        raise ConfigError(f"{name}: the config has no {name} section")
    return section


def _begin(run: Run, stage: str) -> tuple[Any, str, dict[str, Any] | None]:
    """The stage's config section, its config hash, and its committed report if there is one."""
    digest = run.hashes[stage]
    return _section(run, stage), digest, run.committed_report(stage)


def pretrain(run: Run, on_step: OnStep = None) -> dict[str, Any]:
    """Supervised (class labels of the synthetic images) or MoCo v2 pre-training on every committed
    shard; exports the backbone to `pretrain/backbone.safetensors`."""
    config, digest, existing = _begin(run, "pretrain")
    if existing is not None:
        return existing
    manifests = run.committed_shards()
    device = resolve_device(config.device)
    _seed_init(run, "pretrain")
    if config.method == "moco":
        model = build_moco(config.arch, config.moco)
    else:
        model = build_resnet(config.arch, run.label_space.num_classes)
    if config.init_backbone is not None:  # a checkpoint, if any, replaces it in the training loop
        with fsspec.open(config.init_backbone, "rb", **run.config.storage_options) as stream:
            load_backbone(stream.read(), model, f"pretrain.init_backbone {config.init_backbone}")
    train = train_moco if config.method == "moco" else train_supervised
    result = train(
        run.storage,
        PRETRAIN_DIR,
        model,
        config.optim,
        config.image_size,
        run.config.seed,
        config.checkpoint_every,
        device,
        manifests=manifests,
        on_step=on_step,
        config_hash=digest,
    )
    backbone = write_backbone(run.storage, PRETRAIN_DIR, model, config.arch, digest)
    return _commit(
        run,
        PRETRAIN_DIR,
        {
            "config_hash": digest,
            "method": config.method,
            "arch": config.arch,
            "backbone": backbone,
            "synthetic_images": sum(m.count for m in manifests),
            "steps": result.steps,
            "resumed_from_step": result.resumed_from,
            "epoch_losses": result.epoch_losses,
        },
    )


def transfer(run: Run, on_step: OnStep = None) -> dict[str, Any]:
    """Fine-tune on the real dataset from the pre-trained backbone and from random init; top-1 of each."""
    config, digest, existing = _begin(run, "transfer")
    if existing is not None:
        return existing
    pre = _section(run, "pretrain")
    if "pretrained" in config.inits and run.committed_report("pretrain") is None:
        raise DataError("transfer: no committed pre-training for this config: run `synthvision pretrain` first")
    label_space = load_label_space(config.label_space)
    options = run.config.storage_options
    train = load_labelled(config.train_set, config.format, label_space, options, "transfer.train_set")
    if config.per_class is not None:
        train = sample_per_class(train, config.per_class, label_space.classes, run.config.seed, "transfer.train_set")
    test = load_labelled(config.test_set, config.format, label_space, options, "transfer.test_set")
    device = resolve_device(config.device)
    rows = []
    for init in config.inits:
        _seed_init(run, "transfer", init)
        model = build_resnet(pre.arch, label_space.num_classes)
        if init == "pretrained":
            load_backbone(
                run.storage.read_bytes(f"{PRETRAIN_DIR}/{BACKBONE_FILE}"),
                model,
                run.storage.url_of(f"{PRETRAIN_DIR}/{BACKBONE_FILE}"),
            )
        result = train_supervised(
            run.storage,
            f"{TRANSFER_DIR}/{init}",
            model,
            config.optim,
            config.image_size,
            run.config.seed,
            config.checkpoint_every,
            device,
            real=train,
            batch_norm=config.batch_norm,
            on_step=on_step,
            config_hash=digest,
        )
        rows.append(
            {
                "init": init,
                "top1": model_top1(model, test, config.image_size, config.optim.batch_size, device),
                "steps": result.steps,
            }
        )
    return _commit(
        run,
        TRANSFER_DIR,
        {
            "config_hash": digest,
            "dataset": label_space.name,
            "train_images": len(train.labels),
            "test_images": len(test.labels),
            "pretraining": pre.method,
            "arch": pre.arch,
            "results": rows,
        },
    )


def scratch(run: Run, on_step: OnStep = None) -> dict[str, Any]:
    """A ResNet from random init on the synthetic shards and on k real images per class, each scored
    on the run's test set: how many real images the synthetic ones are worth (paper Table 4)."""
    config, digest, existing = _begin(run, "scratch")
    if existing is not None:
        return existing
    url = run.test_set_url()
    if url is None:
        raise ConfigError("scratch: needs a test set (evaluation.test_set or evaluation.demo_test_set)")
    options, space = run.config.storage_options, run.label_space
    test = load_labelled(url, run.config.evaluation.format, space, options, "evaluation.test_set")
    device = resolve_device(config.device)
    jobs: list[tuple[str, dict[str, Any]]] = []
    if config.synthetic:
        manifests = run.committed_shards()
        jobs.append(("synthetic", {"manifests": manifests, "images": sum(m.count for m in manifests)}))
    if config.real_per_class:
        pool = load_labelled(config.real_train_set, config.format, space, options, "scratch.real_train_set")
        for k in config.real_per_class:
            real = sample_per_class(pool, k, space.classes, run.config.seed)
            jobs.append((f"real-{k}-per-class", {"real": real, "images": len(real.labels)}))
    rows = []
    for name, job in jobs:
        _seed_init(run, "scratch", name)
        model = build_resnet(config.arch, space.num_classes)
        result = train_supervised(
            run.storage,
            f"{SCRATCH_DIR}/{name}",
            model,
            config.optim,
            config.image_size,
            run.config.seed,
            config.checkpoint_every,
            device,
            manifests=job.get("manifests"),
            real=job.get("real"),
            on_step=on_step,
            config_hash=digest,
        )
        rows.append(
            {
                "data": name,
                "images": job["images"],
                "top1": model_top1(model, test, config.image_size, config.optim.batch_size, device),
                "steps": result.steps,
            }
        )
    return _commit(
        run,
        SCRATCH_DIR,
        {"config_hash": digest, "arch": config.arch, "test_set": url, "test_images": len(test.labels), "results": rows},
    )
