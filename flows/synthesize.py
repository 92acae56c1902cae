"""The end-to-end flow: prompts -> generate -> score -> train, each stage a sub-flow."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.fanout import artifact_key, describe
from flows.output import writes_output
from flows.stages import generate_flow, prompts_flow, score_flow, train_flow
from synthvision.config import RunConfig


@flow(name="synthesize", flow_run_name="{config.run_name}")
@writes_output
def synthesize(config: RunConfig) -> dict[str, Any]:
    summaries = {
        "prompts": prompts_flow(config),
        "generate": generate_flow(config),
        "score": score_flow(config),
    }
    if summaries["score"].get("quarantined"):
        # corrupt shards were moved aside: generate them again (deterministic: the same images) and score them
        get_run_logger().warning(
            "regenerating %d quarantined shard(s): %s",
            len(summaries["score"]["quarantined"]),
            ", ".join(summaries["score"]["quarantined"]),
        )
        summaries["regenerate"] = generate_flow(config)
        summaries["rescore"] = score_flow(config)
    report = train_flow(config)
    create_table_artifact(
        [
            {"stage": stage, **{k: v for k, v in summary.items() if k != "by_source"}}
            for stage, summary in summaries.items()
        ],
        key=artifact_key(config, "stages"),
        description=describe(config, "train", "work done per stage in this flow run"),
    )
    return {"stages": summaries, "report": report}
