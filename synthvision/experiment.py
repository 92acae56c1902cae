"""An experiment's cells and its report: which stages each cell runs, which cells share a stage's
outputs, and the report built from the cells' committed reports (written at the experiment's root,
`report.json` last).

The cells' work is done by their runs (a flow per cell in `flows/experiment.py`); this module only
reads what they committed, so building the report again costs seconds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict
from typing import Any

from synthvision.core.experiment import Cell, ExperimentConfig, metric_value
from synthvision.core.stage_table import STAGES, lineage
from synthvision.reports.experiment import (
    ExperimentReport,
    SharedStage,
    arm_metrics,
    render_experiment_report,
    render_sweeps,
)
from synthvision.reports.experiment import render_plot as render_experiment_plot
from synthvision.run import open_run
from synthvision.storage.store import Storage


def needed_stages(experiment: ExperimentConfig) -> list[str]:
    """The stages every cell runs: those its metrics read and every stage upstream of them, in the
    table's order."""
    wanted = {row.name for metric in experiment.metrics.values() for row in lineage(metric.stage)}
    return [row.name for row in STAGES if row.name in wanted]


def stages_to_run(cell: Cell, stages: list[str]) -> list[str]:
    """The stages of `stages` the cell still has to compute, read from storage: none in a rerun, and
    only training in a cell whose data an earlier cell (or experiment) committed."""
    missing = {row.stage for row in open_run(cell.config).status() if row.missing}
    return [name for name in stages if name in missing]


def shared_stages(experiment: ExperimentConfig, cells: list[Cell]) -> tuple[list[SharedStage], dict[str, int]]:
    """The stages that cells share (one copy read by several cells) and, per needed stage, how many
    copies all cells together compute."""
    shared, copies = [], {}
    for name in needed_stages(experiment):
        groups: dict[str, list[str]] = defaultdict(list)
        for cell in cells:
            groups[open_run(cell.config).hashes[name]].append(cell.name)
        copies[name] = len(groups)
        shared += [SharedStage(name, digest, names) for digest, names in groups.items() if len(names) > 1]
    return shared, copies


def slot_seconds(experiment: ExperimentConfig, cells: list[Cell]) -> dict[str, Any]:
    """What the stages cost, in seconds their work held a model slot (a GPU, on a GPU node): a shard's
    from its manifest's timings, a whole stage's (training) from its report's `busy_s`; per arm, the
    mean over its cells of what one cell needs (shared copies counted in full: what the arm costs
    alone); for the experiment, what its copies took (each once) and what its cells would have taken
    apart."""
    timed = needed_stages(experiment)
    per_cell: dict[str, dict[str, float]] = {}
    copies: dict[tuple[str, str], float] = {}
    for cell in cells:
        run = open_run(cell.config)
        busy = {row.stage: row.busy_s for row in run.status() if row.stage in timed}
        per_cell[cell.name] = busy
        copies.update({(name, run.hashes[name]): busy[name] for name in timed})
    by_arm = {
        arm: sum(sum(per_cell[c.name].values()) for c in cells if c.arm == arm) / len(experiment.seeds)
        for arm in experiment.arms
    }
    return {
        "slot_seconds": by_arm,
        "slot_seconds_spent": sum(copies.values()),
        "slot_seconds_apart": sum(sum(busy.values()) for busy in per_cell.values()),
    }


def build_report(experiment: ExperimentConfig, cells: list[Cell]) -> ExperimentReport:
    """The experiment's report from its cells' committed reports; written at its root (report.json last)."""
    values = {}
    for cell in cells:
        commits = open_run(cell.config).commits
        records = {
            stage: commits.report_record(stage) or {} for stage in {m.stage for m in experiment.metrics.values()}
        }
        values[cell.arm, cell.seed] = {
            name: metric_value(records[metric.stage], metric) for name, metric in experiment.metrics.items()
        }
    shared, copies = shared_stages(experiment, cells)
    report = ExperimentReport(
        **slot_seconds(experiment, cells),
        name=experiment.name,
        baseline=experiment.baseline,
        seeds=list(experiment.seeds),
        arms=list(experiment.arms),
        metrics={name: metric.model_dump() for name, metric in experiment.metrics.items()},
        results=arm_metrics(experiment, values),
        shared=shared,
        copies=copies,
        sweeps={
            name: {"field": sweep.field, "values": sweep.values, "arms": [sweep.arm(v) for v in sweep.values]}
            for name, sweep in experiment.sweeps.items()
        },
    )
    storage = Storage(experiment.output, cells[0].config.storage_options)
    storage.write_bytes("experiment.png", render_experiment_plot(report))
    if report.sweeps:
        storage.write_bytes("sweeps.png", render_sweeps(report))
    storage.write_bytes("report.md", render_experiment_report(report).encode("utf-8"))
    storage.write_bytes("report.json", json.dumps(asdict(report), indent=1).encode("utf-8"))
    return report
