"""The end-to-end flow: prompts -> generate -> score -> train (-> quality, when the config has that
section), each stage a sub-flow."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import TableArtifact
from prefect.runtime import flow_run

from flows.fanout import StageSummary, artifact_key, describe
from flows.output import writes_output
from flows.progress import BLANK
from flows.run_page import publish, show
from flows.stages import STAGE_FLOWS
from synthvision.core.config import RunConfig, parse_config
from synthvision.core.errors import SynthvisionError
from synthvision.reports.train import TrainReport
from synthvision.run import Run, open_run
from synthvision.stages.prompts import PromptsOutcome
from synthvision.stages.quotas import Standing, next_round, standing


@dataclass(frozen=True)
class Synthesized:
    stages: dict[str, PromptsOutcome | StageSummary]  # what each stage (sub-flow) did
    report: TrainReport


def run_name() -> str:
    """The top-level flow run's name: the run's name for the first run of an output, `NAME-run-2`,
    `NAME-run-3`, ... for the runs after it (counted in the output's run record), so that a rerun
    is told apart from the run it resumes."""
    given = flow_run.parameters["config"]
    try:
        config = given if isinstance(given, RunConfig) else parse_config(given)
        earlier = open_run(config).earlier_runs()
    except (SynthvisionError, OSError):  # the run fails with its own one line; its naming must not
        return given.run_name if isinstance(given, RunConfig) else str(given.get("run_name", "synthvision"))
    return config.run_name if earlier == 0 else f"{config.run_name}-run-{earlier + 1}"


@flow(name="synthesize", flow_run_name=run_name)
@writes_output
def synthesize(run: Run) -> Synthesized:
    config = run.config
    summaries = make_data(config)
    report = STAGE_FLOWS["train"](config)
    if config.quality is not None:
        STAGE_FLOWS["quality"](config)
    publish(
        TableArtifact,
        table=stage_rows(summaries),
        key=artifact_key(run, "stages"),
        description=describe(run, "train", "work done per stage in this flow run"),
    )
    _say_where_the_results_are(run, report)
    return Synthesized(summaries, report)


def make_data(config: RunConfig) -> dict[str, PromptsOutcome | StageSummary]:
    """Prompts, shards and scores, each stage a sub-flow; in quota mode (`shards.top_up`), then a
    top-up round of shards and scores at a time while a class is short of its quota (each round
    recorded before its first shard: a rerun resumes it). Callers hold the output's lock."""
    summaries: dict[str, PromptsOutcome | StageSummary] = {"prompts": STAGE_FLOWS["prompts"](config)}
    _generate_and_score(config, summaries, "")
    run = open_run(config)
    if config.shards.top_up is None:
        return summaries
    while (top_up := next_round(run)) is not None:
        _show_quota(run)
        get_run_logger().info(
            "top-up round %d: %d more images for %d class(es)",
            top_up.number,
            sum(top_up.images),
            sum(1 for n in top_up.images if n),
        )
        _generate_and_score(config, summaries, f" round {top_up.number}")
    now = _show_quota(run)
    short = [name for name, lacking in zip(run.label_space.classes, now.short, strict=True) if lacking]
    if short:
        get_run_logger().warning(
            "quota mode: %d class(es) short of their quota of %d at the cap or the last round: %s",
            len(short),
            now.quota,
            ", ".join(short),
        )
    return summaries


def _show_quota(run: Run) -> Standing:
    """Quota mode's per-class table on the run page, updated in place after every round."""
    now = standing(run, partial=True)
    show(
        TableArtifact,
        artifact_key(run, "quota"),
        describe(run, "generate", f"top-up rounds: per class, after {now.rounds} round(s)"),
        table=now.rows(run.label_space.classes, run.config.shards.top_up.policy, run.config.shards.top_up.signal),
    )
    return now


def _generate_and_score(config: RunConfig, summaries: dict[str, PromptsOutcome | StageSummary], label: str) -> None:
    """Generate and score every planned shard; shards whose tar scoring found corrupt (moved aside)
    are generated again, deterministically the same images, and scored."""
    generate, score = STAGE_FLOWS["generate"], STAGE_FLOWS["score"]
    summaries[f"generate{label}"] = generate(config)
    summaries[f"score{label}"] = scored = score(config)
    if scored.quarantined:
        get_run_logger().warning(
            "regenerating %d quarantined shard(s): %s", len(scored.quarantined), ", ".join(scored.quarantined)
        )
        summaries[f"regenerate{label}"] = generate(config)
        summaries[f"rescore{label}"] = score(config)


def _say_where_the_results_are(run: Run, report: TrainReport) -> None:
    """The run's last log line: the train report's line (the top-1) and where the reports are."""
    test_set = f" on {report.evaluation.test_set}" if report.evaluation.test_set else ""
    quality = f"; data quality: {run.storage.url_of('quality/report.md')}" if run.config.quality is not None else ""
    get_run_logger().info("%s%s; report: %s%s", report.line(), test_set, run.storage.url_of("train/report.md"), quality)


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
