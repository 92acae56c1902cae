"""The end-to-end flow: prompts -> generate -> score -> train, each stage a sub-flow."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.fanout import StageSummary, artifact_key, describe
from flows.output import writes_output
from flows.stages import generate_flow, prompts_flow, score_flow, train_flow
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
    create_table_artifact(
        [{"stage": stage, **summary_fields(summary)} for stage, summary in summaries.items()],
        key=artifact_key(config, "stages"),
        description=describe(config, "train", "work done per stage in this flow run"),
    )
    return Synthesized(summaries, report)


def summary_fields(summary: PromptsOutcome | StageSummary) -> dict[str, Any]:
    """A stage summary's fields as one flat row (for a table, or a line in the terminal)."""
    return {key: value for key, value in asdict(summary).items() if key not in ("stage", "by_source")}
