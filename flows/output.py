"""Every flow that writes to a run's output holds the output's lock and checks its config version
first (`Run.writing`): two runs never generate the same shard, and one output never mixes configs.

The lock names the flow run that holds it. A process killed with SIGKILL cannot tell Prefect that its
flow run ended: the run, its sub-flows and its in-flight task runs would stay "Running" in the UI for
ever. The next flow run to take the output over from it marks them Crashed, and says (in its logs
and a `resumes` artifact, with links both ways) which run it resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect import get_client, get_run_logger
from prefect.artifacts import MarkdownArtifact
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run
from prefect.states import Crashed

from flows import signals
from flows.run_page import publish
from synthvision.core.config import RunConfig
from synthvision.run import Run, open_run

Result = TypeVar("Result")
UNFINISHED = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED, StateType.PAUSED, StateType.CANCELLING]


def writes_output(body: Callable[[Run], Result]) -> Callable[[RunConfig], Result]:
    """A flow function of the run config (put it under `@flow`: Prefect shows its one parameter,
    `config`) that opens the run, takes its output, and hands `body` the run."""

    def wrapper(config: RunConfig) -> Result:
        signals.watch()  # SIGTERM or Ctrl-C stops this process within seconds (flows/signals.py)
        run = open_run(config)
        this = {"flow_run_id": str(flow_run.id), "name": flow_run.name, "url": flow_run.ui_url}
        with run.writing(this) as taken_over:
            if taken_over is not None:
                resume(run, taken_over, this)
            return body(run)

    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(wrapper, attribute, getattr(body, attribute))
    return wrapper


def resume(run: Run, record: dict[str, Any], this: dict[str, Any]) -> None:
    """Mark the dead lock holder's flow run, its sub-flow runs and their unfinished task runs Crashed,
    and link this flow run to it (`record`: the dead holder's lock record)."""
    from flows.fanout import artifact_key  # fanout's flows are wrapped by this module's decorator

    logger = get_run_logger()
    dead = record.get("run") or {}
    if not dead.get("flow_run_id"):
        logger.warning(
            "resuming the output of a run that is gone (host %s pid %s)", record.get("host"), record.get("pid")
        )
        return
    message = f"its process died; flow run {this['name']} ({this['url'] or this['flow_run_id']}) resumes its work"
    with get_client(sync_client=True) as client:
        crashed = [each for each in _with_descendants(client, dead["flow_run_id"]) if each.state_type in UNFINISHED]
        for each in crashed:
            client.set_flow_run_state(each.id, Crashed(message=message), force=True)
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[each.id for each in crashed])),
            task_run_filter=TaskRunFilter(state={"type": TaskRunFilterStateType(any_=UNFINISHED)}),
        )
        for task in tasks:
            client.set_task_run_state(task.id, Crashed(message=message), force=True)
    link = dead.get("url") or dead["flow_run_id"]
    logger.warning(
        "resuming flow run %s (%s), whose process died: %d flow run(s), %d task run(s) it left running marked Crashed",
        dead.get("name"),
        link,
        len(crashed),
        len(tasks),
    )
    publish(
        MarkdownArtifact,
        markdown=f"# Resumes {dead.get('name')}\n\nThis flow run took the output "
        f"`{run.storage.url}` over from flow run [{dead.get('name')}]({link}), whose process "
        f"died (host {record.get('host')} pid {record.get('pid')}). The {len(crashed)} flow run(s) and "
        f"{len(tasks)} task run(s) it left running are marked Crashed; this run skips every shard that run "
        "committed.\n",
        key=artifact_key(run, "resumes"),
        description=f"{run.config.run_name}: the flow run this one resumes",
    )


def _with_descendants(client: Any, root_id: str) -> list[Any]:
    """The flow run `root_id` and every flow run below it (its stages' flows, their waves)."""
    found = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[root_id])))
    frontier = [run.id for run in found]
    while frontier:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
        )
        found += children
        frontier = [run.id for run in children]
    return found
