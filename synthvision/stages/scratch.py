"""The scratch stage (paper Table 4): ResNets from random init on the synthetic shards and on k real
images per class, each scored on the run's test set: how many real images the synthetic ones are worth."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from synthvision.core.errors import ConfigError
from synthvision.core.stage_table import stage
from synthvision.methods.pretraining.data import load_labelled
from synthvision.methods.pretraining.jobs import (
    Job,
    OnStep,
    model_top1,
    sample_per_class,
    seed_init,
    train_supervised,
)
from synthvision.methods.pretraining.models import build_resnet
from synthvision.reports.page import Page, PageItem
from synthvision.reports.resnets import ScratchReport, ScratchRow
from synthvision.stages import generate

if TYPE_CHECKING:
    from synthvision.run import Run

SCRATCH_DIR = stage("scratch").folder


def committed(run: Run) -> ScratchReport | None:
    return run.commits.report("scratch", ScratchReport)


def page(run: Run, report: ScratchReport, done_now: bool) -> Page:
    table = [asdict(row) for row in report.results]
    return Page(report, [PageItem("scratch", "top-1 from scratch", table=table)])


def scratch(run: Run, on_step: OnStep = None) -> ScratchReport:
    config, digest, space = run.section("scratch"), run.hashes["scratch"], run.label_space
    url = run.test_set_url()
    if url is None:
        raise ConfigError("scratch: needs a test set (evaluation.test_set or evaluation.demo_test_set)")
    options = run.config.storage_options
    # 1. the test set, and the training jobs: the synthetic shards, and k real images per class for each k
    test = load_labelled(url, run.config.evaluation.format, space, options, "evaluation.test_set")
    jobs: list[tuple[str, dict[str, Any]]] = []  # (name, its data)
    if config.synthetic:
        manifests = generate.committed_shards(run)
        jobs.append(("synthetic", {"manifests": manifests, "images": sum(m.count for m in manifests)}))
    if config.real_per_class:
        pool = load_labelled(config.real_train_set, config.format, space, options, "scratch.real_train_set")
        for k in config.real_per_class:
            real = sample_per_class(pool, k, space.classes, run.config.seed)
            jobs.append((f"real-{k}-per-class", {"real": real, "images": len(real.labels)}))
    rows = []
    for name, job_data in jobs:
        # 2. a seeded random init, trained (checkpointed, resumable), then its top-1 on the test set
        seed_init(run.config.seed, "scratch", name)
        model = build_resnet(config.arch, space.num_classes)
        job = Job.of(config, run.storage, f"{SCRATCH_DIR}/{name}", run.config.seed, digest, on_step)
        result = train_supervised(job, model, manifests=job_data.get("manifests"), real=job_data.get("real"))
        top1 = model_top1(job, model, test)
        rows.append(ScratchRow(name, job_data["images"], top1, result.steps))
    # 3. the report (it commits the stage)
    report = ScratchReport(digest, config.arch, run.shown(url), len(test.labels), rows)
    run.commits.commit_report("scratch", report)
    return report
