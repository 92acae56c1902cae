"""The experiment flow: every arm at every seed (a cell) as a sub-flow run named `<experiment>: <arm>
seed <seed>`, then the report with intervals and verdicts (`synthvision/experiment.py`).

Cells run one after another, each spreading its shards over the GPU slots as a run does. A cell
reads a stage that an earlier cell with the same stage hash committed (`RunConfig.shared_stages`),
so shared work is computed once. The experiment holds its output's lock, and the stages folder's
when that lies elsewhere (experiments that share one take turns). A killed experiment, rerun, skips
everything committed, like a run, and a cell starts a sub-flow only for the stages it has still to compute.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import MarkdownArtifact, TableArtifact
from prefect.runtime import flow_run

from flows import signals
from flows.fanout import output_key
from flows.run_page import publish
from flows.stages import STAGE_FLOWS
from flows.synthesize import make_data
from synthvision.core.config import RunConfig
from synthvision.core.experiment import ExperimentConfig, cells
from synthvision.experiment import build_report, needed_stages, stages_to_run
from synthvision.reports.experiment import ExperimentReport, render_experiment_report
from synthvision.reports.page import inline_images
from synthvision.storage.lock import locked_output
from synthvision.storage.store import Storage


@flow(name="experiment-cell")
def cell_flow(config: RunConfig, stages: list[str]) -> dict[str, Any]:
    """One arm at one seed: the `stages` it has still to compute, in order, each a sub-flow of this
    one (the data stages as `run` makes them)."""
    summaries: dict[str, Any] = make_data(config) if {"prompts", "generate", "score"} & set(stages) else {}
    for stage in stages:
        if stage not in summaries:
            summaries[stage] = STAGE_FLOWS[stage](config)
    return summaries


@flow(name="experiment", flow_run_name="{experiment.name}")
def experiment_flow(experiment: ExperimentConfig, overrides: list[str] | None = None) -> ExperimentReport:
    """Run every cell, then write and publish the experiment's report (`overrides`: `key.path=value`
    changes to the base config of every arm)."""
    signals.watch()
    made, stages = cells(experiment, overrides), needed_stages(experiment)
    orchestration = made[0].config.orchestration
    options = made[0].config.storage_options
    storage = Storage(experiment.output, options)
    this = {"flow_run_id": str(flow_run.id), "name": flow_run.name, "url": flow_run.ui_url}
    with ExitStack() as held:
        # temporaries of a killed experiment's cells and stages (no one else writes there while we hold them)
        folders = [storage] + ([Storage(experiment.stages_folder, options)] if experiment.stages_apart else [])
        for folder in folders:
            if held.enter_context(locked_output(folder, orchestration.lock_ttl_s, orchestration.lock_wait_s, this)):
                folder.sweep_temporaries()
        for number, cell in enumerate(made, 1):
            todo = stages_to_run(cell, stages)  # committed stages start no sub-flow (nor task runs to show for them)
            get_run_logger().info(
                "cell %d of %d: %s: %s", number, len(made), cell.name, ", ".join(todo) or "every stage committed"
            )
            if todo:
                named = cell_flow.with_options(flow_run_name=f"{experiment.name}: {cell.arm} seed {cell.seed}")
                named(cell.config, todo)
        report = build_report(experiment, made)
    _publish(experiment, storage, report)
    get_run_logger().info("%s; report: %s", report.line(), storage.url_of("report.md"))
    return report


def _publish(experiment: ExperimentConfig, storage: Storage, report: ExperimentReport) -> None:
    """The report (its plot embedded) and its table as artifacts of the experiment's flow run; the
    report last, so that it heads the run's artifacts, above those of its cells."""
    key = output_key(experiment.name, storage, "experiment")
    rows = [
        {
            "metric": row.metric,
            "arm": row.arm,
            **{
                name: "—" if value is None else round(value, 2)  # the baseline has no difference: a dash, not a blank
                for name, value in (
                    ("mean", row.mean),
                    ("low", row.low),
                    ("high", row.high),
                    ("difference", row.difference),
                    ("difference_low", row.difference_low),
                    ("difference_high", row.difference_high),
                )
            },
            "verdict": row.verdict or "baseline",
        }
        for row in report.results
    ]
    publish(TableArtifact, table=rows, key=key, description=f"{experiment.name}: mean, interval and verdict per arm")
    publish(
        MarkdownArtifact,
        markdown=inline_images(render_experiment_report(report), storage, ""),
        key=f"{key}-report",
        description=f"{experiment.name}: arms against {experiment.baseline} over {len(experiment.seeds)} seed(s)",
    )
