"""The end-to-end flow: prompts -> generate -> score -> train, each stage a sub-flow."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from synthvision.config import RunConfig
from synthvision.run import open_run
from flows.fanout import artifact_key, describe
from flows.stages import generate_flow, prompts_flow, score_flow, train_flow


@flow(name="synthesize", flow_run_name="{config.run_name}")
def synthesize(config: RunConfig) -> dict[str, Any]:
    open_run(config).write_record()
    summaries = {
        "prompts": prompts_flow(config),
        "generate": generate_flow(config),
        "score": score_flow(config),
    }
    report = train_flow(config)
    create_table_artifact(
        [{"stage": stage, **{k: v for k, v in summary.items() if k != "by_source"}} for stage, summary in summaries.items()],
        key=artifact_key(config, "stages"),
        description=describe(config, "train", "work done per stage in this flow run"),
    )
    return {"stages": summaries, "report": report}
