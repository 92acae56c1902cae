"""The pretrain stage (paper Tables 8-10): a ResNet pre-trained on every committed synthetic shard,
supervised (the images' class labels) or with MoCo v2; resumes from its checkpoints and exports the
backbone to `pretrain/backbone.safetensors`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import fsspec

from synthvision.core.stage_table import stage
from synthvision.methods.pretraining.jobs import (
    Job,
    OnStep,
    build_moco,
    load_backbone,
    seed_init,
    train_moco,
    train_supervised,
    write_backbone,
)
from synthvision.methods.pretraining.models import build_resnet
from synthvision.reports.page import Page, PageItem
from synthvision.reports.resnets import PretrainReport
from synthvision.stages import generate

if TYPE_CHECKING:
    from synthvision.run import Run

PRETRAIN_DIR = stage("pretrain").folder


def committed(run: Run) -> PretrainReport | None:
    return run.commits.report("pretrain", PretrainReport)


def page(run: Run, report: PretrainReport, done_now: bool) -> Page:
    row = {"method": report.method, "arch": report.arch, "images": report.synthetic_images, "steps": report.steps}
    table = [{**row, "backbone": report.backbone}]
    return Page(report, [PageItem("pretrain", "pre-training", table=table)])


def pretrain(run: Run, on_step: OnStep = None) -> PretrainReport:
    config, digest = run.section("pretrain"), run.hashes["pretrain"]
    # 1. every committed shard (an error names the first missing one)
    manifests = generate.committed_shards(run)
    # 2. the model, its init fixed by the run's seed: a classifier, or MoCo's two encoders and queue;
    #    optionally from a backbone (a checkpoint, if any, replaces it in the training loop)
    seed_init(run.config.seed, "pretrain")
    if config.method == "moco":
        model = build_moco(config.arch, config.moco)
    else:
        model = build_resnet(config.arch, run.label_space.num_classes)
    if config.init_backbone is not None:
        with fsspec.open(config.init_backbone, "rb", **run.config.storage_options) as stream:
            load_backbone(stream.read(), model, f"pretrain.init_backbone {config.init_backbone}")
    # 3. training over the shards, checkpointed, resumable
    job = Job.of(config, run.storage, PRETRAIN_DIR, run.config.seed, digest, on_step)
    if config.method == "moco":
        result = train_moco(job, model, manifests)
    else:
        result = train_supervised(job, model, manifests=manifests)
    # 4. the backbone, then the report (it commits the stage)
    report = PretrainReport(
        config_hash=digest,
        method=config.method,
        arch=config.arch,
        backbone=run.shown(write_backbone(run.storage, PRETRAIN_DIR, model, config.arch, digest)),
        synthetic_images=sum(m.count for m in manifests),
        steps=result.steps,
        resumed_from_step=result.resumed_from,
        epoch_losses=result.epoch_losses,
    )
    run.commits.commit_report("pretrain", report)
    return report
