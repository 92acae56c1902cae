"""One flow per stage, made from its row (`STAGE_FLOWS`; each also a module attribute `<stage>_flow`,
the deployments' entrypoint). Each is resumable: rerunning it redoes only what storage lacks.

A flow runs its stage's Prefect task (the whole stage, or every shard in waves), then shows what the
stage file's `page(run, outcome, done_now)` says: its artifacts on the run page, and the summary the
flow returns. Nothing here knows a stage by name.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from prefect import Flow, flow

from flows.engines import ensure_gpu_limit
from flows.fanout import run_shard_tasks, show_page
from flows.output import writes_output
from synthvision.core.stage_table import STAGES, Stage
from synthvision.run import Run
from tasks.stages import UNIT_TASKS


def stage_flow(row: Stage) -> Flow:
    """The flow of a stage row: named as the stage, its runs `<run name>-<stage>`."""

    def body(run: Run) -> Any:
        if row.per_shard:
            outcome = run_shard_tasks(run, row.name)
            done_now = outcome.done_now > 0
        else:
            ensure_gpu_limit(run.config)
            outcome, done_now = UNIT_TASKS[row.name](run.config)
        page = import_module(f"synthvision.stages.{row.name}").page(run, outcome, done_now)
        show_page(run, row.name, page)
        return page.summary

    body.__name__ = body.__qualname__ = f"{row.name}_flow"
    body.__doc__ = row.summary
    return flow(writes_output(body), name=row.name, flow_run_name=f"{{config.run_name}}-{row.name}")


STAGE_FLOWS: dict[str, Flow] = {row.name: stage_flow(row) for row in STAGES}
globals().update({f"{name}_flow": made for name, made in STAGE_FLOWS.items()})
