"""The transfer stage (paper Tables 8-10): the pre-trained backbone and a random init, each
fine-tuned on a real dataset; top-1 of each on its test split."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from synthvision.core.errors import DataError
from synthvision.core.label_spaces import load_label_space
from synthvision.core.stage_table import stage
from synthvision.methods.pretraining.data import load_labelled
from synthvision.methods.pretraining.jobs import (
    BACKBONE_FILE,
    Job,
    OnStep,
    load_backbone,
    model_top1,
    sample_per_class,
    seed_init,
    train_supervised,
)
from synthvision.methods.pretraining.models import build_resnet
from synthvision.reports.page import Page, PageItem
from synthvision.reports.resnets import TransferReport, TransferRow
from synthvision.stages.pretrain import PRETRAIN_DIR

if TYPE_CHECKING:
    from synthvision.run import Run

TRANSFER_DIR = stage("transfer").folder


def committed(run: Run) -> TransferReport | None:
    return run.commits.report("transfer", TransferReport)


def page(run: Run, report: TransferReport, done_now: bool) -> Page:
    table = [asdict(row) for row in report.results]
    return Page(report, [PageItem("transfer", f"top-1 on {report.dataset}", table=table)])


def transfer(run: Run, on_step: OnStep = None) -> TransferReport:
    config, digest, pre = run.section("transfer"), run.hashes["transfer"], run.section("pretrain")
    if "pretrained" in config.inits and not run.commits.has_report("pretrain"):
        raise DataError("transfer: no committed pre-training for this config: run `synthvision pretrain` first")
    # 1. the real dataset: its train split (optionally k images per class) and its test split
    label_space = load_label_space(config.label_space)
    options = run.config.storage_options
    train = load_labelled(config.train_set, config.format, label_space, options, "transfer.train_set")
    if config.per_class is not None:
        train = sample_per_class(train, config.per_class, label_space.classes, run.config.seed, "transfer.train_set")
    test = load_labelled(config.test_set, config.format, label_space, options, "transfer.test_set")
    rows = []
    for init in config.inits:
        # 2. a ResNet with the dataset's classes, from the exported backbone or a seeded random init
        seed_init(run.config.seed, "transfer", init)
        model = build_resnet(pre.arch, label_space.num_classes)
        if init == "pretrained":
            backbone = f"{PRETRAIN_DIR}/{BACKBONE_FILE}"
            load_backbone(run.storage.read_bytes(backbone), model, run.storage.url_of(backbone))
        # 3. fine-tuned (checkpointed, resumable), then its top-1 on the test split
        job = Job.of(config, run.storage, f"{TRANSFER_DIR}/{init}", run.config.seed, digest, on_step)
        result = train_supervised(job, model, real=train, batch_norm=config.batch_norm)
        top1 = model_top1(job, model, test)
        rows.append(TransferRow(init, top1, result.steps))
    # 4. the report (it commits the stage)
    report = TransferReport(
        config_hash=digest,
        dataset=label_space.name,
        train_images=len(train.labels),
        test_images=len(test.labels),
        pretraining=pre.method,
        arch=pre.arch,
        results=rows,
    )
    run.commits.commit_report("transfer", report)
    return report
