"""One flow per stage. Each is resumable: rerunning it redoes only what storage lacks."""

from __future__ import annotations

import base64
import re
from dataclasses import asdict

from prefect import flow
from prefect.artifacts import MarkdownArtifact, TableArtifact

from flows.engines import ensure_gpu_limit
from flows.fanout import StageSummary, artifact_key, describe, publish_contact_sheet, run_shard_tasks
from flows.output import writes_output
from flows.run_page import publish
from synthvision.core.config import RunConfig
from synthvision.core.stage_table import stage as stage_row
from synthvision.reports.fewshot import FewShotReport, render_few_shot_report
from synthvision.reports.quality import QualityReport, render_quality_report, table_rows
from synthvision.reports.resnets import PretrainReport, ScratchReport, TransferReport
from synthvision.reports.train import TrainReport, render_train_report
from synthvision.run import open_run
from synthvision.stages import generate
from synthvision.stages.prompts import PromptsOutcome
from synthvision.storage.store import Storage
from tasks.stages import UNIT_TASKS


@flow(name="prompts", flow_run_name="{config.run_name}-prompts")
@writes_output
def prompts_flow(config: RunConfig) -> PromptsOutcome:
    ensure_gpu_limit(config)
    table, done_now = UNIT_TASKS["prompts"](config)
    summary = PromptsOutcome.of(table, done_now)
    publish(
        TableArtifact,
        table=[{"source": source, "prompts": count} for source, count in summary.by_source.items()],
        key=artifact_key(config, "prompts"),
        description=describe(config, "prompts", f"prompts by source ({config.prompts.strategy})"),
    )
    return summary


@flow(name="generate", flow_run_name="{config.run_name}-generate")
@writes_output
def generate_flow(config: RunConfig) -> StageSummary:
    summary = run_shard_tasks(config, "generate")
    publish_contact_sheet(config, generate.contact_sheet(open_run(config)), "contact sheet")
    return summary


@flow(name="score", flow_run_name="{config.run_name}-score")
@writes_output
def score_flow(config: RunConfig) -> StageSummary:
    return run_shard_tasks(config, "score")


@flow(name="train", flow_run_name="{config.run_name}-train")
@writes_output
def train_flow(config: RunConfig) -> TrainReport:
    ensure_gpu_limit(config)
    report, _ = UNIT_TASKS["train"](config)
    publish(
        MarkdownArtifact,
        markdown=render_train_report(report),
        key=artifact_key(config, "report"),
        description=describe(config, "train", "report"),
    )
    evaluation = report.evaluation
    publish(
        TableArtifact,
        table=[
            {"model": "CLIP zero-shot", "top1": evaluation.zero_shot_top1},
            {"model": "CLIP + synthetic (CT)", "top1": evaluation.tuned_top1},
        ],
        key=artifact_key(config, "train"),
        description=describe(config, "train", f"top-1 on {evaluation.test_set}"),
    )
    return report


@flow(name="fewshot", flow_run_name="{config.run_name}-fewshot")
@writes_output
def fewshot_flow(config: RunConfig) -> FewShotReport:
    """Few-shot CT per shot count and strategy, on the scored synthetic shards and real shots."""
    ensure_gpu_limit(config)
    report, _ = UNIT_TASKS["fewshot"](config)
    publish_report(
        config,
        "fewshot",
        render_few_shot_report(report),
        [asdict(row) for row in report.results],
        "top-1 per shots and strategy",
    )
    return report


def publish_report(config: RunConfig, stage: str, markdown: str, rows: list[dict], what: str) -> None:
    """A stage's report as two artifacts: its markdown (`<stage>-report`, its plots embedded: the UI
    cannot serve the files beside it) and its table (`<stage>`)."""
    publish(
        MarkdownArtifact,
        markdown=inline_images(markdown, open_run(config).storage, stage_row(stage).folder),
        key=artifact_key(config, f"{stage}-report"),
        description=describe(config, stage, f"{stage} report"),
    )
    publish(TableArtifact, table=rows, key=artifact_key(config, stage), description=describe(config, stage, what))


@flow(name="quality", flow_run_name="{config.run_name}-quality")
@writes_output
def quality_flow(config: RunConfig) -> QualityReport:
    """The data-quality report: per class, CF pass rate, diversity, near-duplicates, distance to real."""
    ensure_gpu_limit(config)
    report, _ = UNIT_TASKS["quality"](config)
    publish_report(
        config,
        "quality",
        render_quality_report(report),
        table_rows(report),
        "diversity, near-duplicates, distance to real",
    )
    return report


def inline_images(markdown: str, storage: Storage, folder: str) -> str:
    """`![alt](plot.png)` links to files of the report's folder as data URIs of those files."""

    def embedded(match: re.Match) -> str:
        data = base64.b64encode(storage.read_bytes(f"{folder}/{match[2]}")).decode("ascii")
        return f"![{match[1]}](data:image/png;base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)", embedded, markdown)


@flow(name="pretrain", flow_run_name="{config.run_name}-pretrain")
@writes_output
def pretrain_flow(config: RunConfig) -> PretrainReport:
    """Pre-train a ResNet (supervised or MoCo v2) on the run's synthetic shards; resumes from checkpoints."""
    ensure_gpu_limit(config)
    report, _ = UNIT_TASKS["pretrain"](config)
    publish(
        TableArtifact,
        table=[
            {
                "method": report.method,
                "arch": report.arch,
                "images": report.synthetic_images,
                "steps": report.steps,
                "backbone": report.backbone,
            }
        ],
        key=artifact_key(config, "pretrain"),
        description=describe(config, "pretrain", "pre-training"),
    )
    return report


@flow(name="transfer", flow_run_name="{config.run_name}-transfer")
@writes_output
def transfer_flow(config: RunConfig) -> TransferReport:
    """Fine-tune the pre-trained backbone and a random init on a real dataset; top-1 of each."""
    ensure_gpu_limit(config)
    report, _ = UNIT_TASKS["transfer"](config)
    publish(
        TableArtifact,
        table=[asdict(row) for row in report.results],
        key=artifact_key(config, "transfer"),
        description=describe(config, "transfer", f"top-1 on {report.dataset}"),
    )
    return report


@flow(name="scratch", flow_run_name="{config.run_name}-scratch")
@writes_output
def scratch_flow(config: RunConfig) -> ScratchReport:
    """ResNets from random init on synthetic data and on k real images per class; top-1 of each."""
    ensure_gpu_limit(config)
    report, _ = UNIT_TASKS["scratch"](config)
    publish(
        TableArtifact,
        table=[asdict(row) for row in report.results],
        key=artifact_key(config, "scratch"),
        description=describe(config, "scratch", "top-1 from scratch"),
    )
    return report
