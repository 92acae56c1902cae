"""A new stage is a row of the table and a file: its Prefect task, flow, command and deployments come
from the row. A process adds a stage (`count`: a row and a module, nothing else) before it imports the
orchestration, as a checkout with that stage would, then runs the stage's command as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from flows.fanout import artifact_key
from synthvision.run import open_run
from tests.conftest import REPO, tiny_config
from tests.flows.test_prefect_server import client_of

ADD_A_STAGE = """
import json, sys, types
from dataclasses import dataclass

import yaml

from synthvision.core import stage_table
from synthvision.reports.page import Page, PageItem


@dataclass(frozen=True)
class CountReport:
    config_hash: str
    classes: int

    def line(self) -> str:
        return f"{self.classes} classes counted"


def count(run):
    report = CountReport(run.hashes["count"], len(run.label_space.classes))
    run.commits.commit_report("count", report)
    return report


stage_file = types.ModuleType("synthvision.stages.count")
stage_file.committed = lambda run: run.commits.report("count", CountReport)
stage_file.count = count
stage_file.page = lambda run, report, done_now: Page(
    report, [PageItem("count", "classes counted", table=[{"classes": report.classes}])]
)
sys.modules[stage_file.__name__] = stage_file

row = stage_table.Stage(
    "count", (), (stage_table.section("seed"),), "count/", per_shard=False, summary="the classes counted"
)
stage_table.STAGES += (row,)
stage_table.BY_NAME[row.name] = row
stage_table.NAMES += (row.name,)

from flows import cli, deployments, stages  # noqa: E402  (after the row, as a checkout with it imports them)
from tasks.stages import UNIT_TASKS  # noqa: E402

print(json.dumps({
    "task": UNIT_TASKS["count"].name,
    "flow": stages.count_flow.name,
    "commands": [command.name for command in cli.app.registered_commands],
    "deployments": yaml.safe_load(deployments.prefect_yaml())["deployments"],
}))
sys.argv = ["synthvision", *sys.argv[1:]]
cli.main()
"""


def run_with_the_new_stage(tmp_path, env, *args: str) -> tuple[dict, list[str]]:
    script = tmp_path / "with_a_count_stage.py"
    script.write_text(ADD_A_STAGE)
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    first, *lines = result.stdout.splitlines()
    return json.loads(first), lines


def test_a_stage_added_as_a_row_and_a_file_gets_its_task_flow_command_and_deployments(
    tmp_path, prefect_cli_server, colours_file
):
    config = tiny_config(tmp_path / "run", colours_file, run_name="counted")
    config_file = tmp_path / "counted.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**prefect_cli_server, "PYTHONPATH": str(REPO)}

    found, lines = run_with_the_new_stage(tmp_path, env, "count", str(config_file))
    assert (found["task"], found["flow"]) == ("count", "count")
    assert "count" in found["commands"]
    deployed = {(d["name"], d["entrypoint"], d["description"]) for d in found["deployments"]}
    assert {(pool, "flows/stages.py:count_flow", "The classes counted.") for pool in ("local", "k8s")} <= deployed

    # the command as a user types it: the flow ran the task, the stage file committed, the page shows it
    report_file = tmp_path / "run" / "count" / "report.json"
    assert lines == ["3 classes counted", f"report: {report_file}"]
    assert json.loads(report_file.read_text())["classes"] == 3
    with client_of(prefect_cli_server) as client:
        runs = [run for run in client.read_flow_runs() if run.name == "counted-count"]
        assert [run.state.type.value for run in runs] == ["COMPLETED"]
        artifacts = client.read_artifacts()
    (table,) = [
        a for a in artifacts if a.key == artifact_key(open_run(config), "count") and a.flow_run_id == runs[0].id
    ]
    assert json.loads(table.data) == [{"classes": 3}]

    # committed: the rerun reads it back and does not redo it
    written = report_file.stat().st_mtime_ns
    assert run_with_the_new_stage(tmp_path, env, "count", str(config_file))[1] == lines
    assert report_file.stat().st_mtime_ns == written
