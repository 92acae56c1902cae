"""The end-to-end flow: prompts -> generate -> score -> train (-> quality, when the config has that
section), each stage a sub-flow."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.fanout import StageSummary, artifact_key, describe
from flows.output import writes_output
from flows.progress import BLANK
from flows.stages import generate_flow, prompts_flow, quality_flow, score_flow, train_flow
from synthvision.core.config import RunConfig
from synthvision.reports.train import TrainReport
from synthvision.stages.prompts import PromptsOutcome


@dataclass(frozen=True)
class Synthesized:
    stages: dict[str, PromptsOutcome | StageSummary]  # what each stage (sub-flow) did
    report: TrainReport


@flow(name="synthesize", flow_run_name="{config.run_name}")
@writes_output
def synthesize(config: RunConfig) -> Synthesized:
    summaries: dict[str, PromptsOutcome | StageSummary] = {
        "prompts": prompts_flow(config),
        "generate": generate_flow(config),
        "score": score_flow(config),
    }
    quarantined = summaries["score"].quarantined
    if quarantined:
        # corrupt shards were moved aside: generate them again (deterministic: the same images) and score them
        get_run_logger().warning("regenerating %d quarantined shard(s): %s", len(quarantined), ", ".join(quarantined))
        summaries["regenerate"] = generate_flow(config)
        summaries["rescore"] = score_flow(config)
    report = train_flow(config)
    if config.quality is not None:
        quality_flow(config)
    create_table_artifact(
        stage_rows(summaries),
        key=artifact_key(config, "stages"),
        description=describe(config, "train", "work done per stage in this flow run"),
    )
    return Synthesized(summaries, report)


def stage_rows(summaries: dict[str, PromptsOutcome | StageSummary]) -> list[dict[str, Any]]:
    """One row per stage with every column of every row (`—` where a stage has nothing to say), a
    quarantined shard named with its reason: the UI takes a table's columns from its first row."""
    rows = [{"stage": stage, **_cells(summary)} for stage, summary in summaries.items()]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    return [{column: row.get(column, BLANK) for column in columns} for row in rows]


def _cells(summary: PromptsOutcome | StageSummary) -> dict[str, Any]:
    fields = {key: value for key, value in asdict(summary).items() if key not in ("stage", "quarantine_reasons")}
    if "by_source" in fields:
        fields["by_source"] = ", ".join(f"{source}: {n}" for source, n in fields["by_source"].items()) or BLANK
    if isinstance(summary, StageSummary):
        reasons = summary.quarantine_reasons
        fields["quarantined"] = "; ".join(f"{shard} ({reasons[shard]})" for shard in summary.quarantined) or BLANK
    if fields.get("storage_requests") is not None:
        fields["storage_requests"] = ", ".join(f"{k}: {n}" for k, n in sorted(fields["storage_requests"].items()))
    return {key: BLANK if value is None else value for key, value in fields.items()}
