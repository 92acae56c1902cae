"""An experiment killed anywhere (the pipeline's failpoints, in the cells that compute a shared
stage and in those that only read it) and rerun completes with each cell's results exactly once."""

from __future__ import annotations

import json

import pytest
import yaml

from synthvision.core.experiment import cells, load_experiment
from synthvision.run import Run
from synthvision.storage.store import Storage
from tests.helpers import write_experiment
from tests.reliability.harness import KILLED, TALLY, check_complete, check_visible, tail, temporaries
from tests.reliability.test_kill_points import manifests, write_config

# cells in order: default-seed0, default-seed1, slow-seed0, slow-seed1 (the slow arm only trains)
KILL_POINTS = (
    "prompts.class:2",
    "generate.before_manifest:2",
    "score.batch:3",
    "train.before_report:1",
    "storage.before_commit:4",
    "train.before_report:2",  # the third cell's training: it reads the first cell's shards
)


@pytest.mark.slow
def test_an_experiment_killed_anywhere_completes_each_cell_exactly_once(launcher, tmp_path, colours_file):
    write_config(tmp_path / "base.yaml", str(tmp_path / "unused"), {}, colours_file)
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    del base["shards"]["top_up"], base["filter"]  # a fixed plan: 6 shards per seed (quota mode: the kill suite)
    write_experiment(tmp_path, base, name="kills")
    argv = ["experiment", str(tmp_path / "experiment.yaml")]
    runs = [Run(cell.config) for cell in cells(load_experiment(tmp_path / "experiment.yaml"))]

    def committed() -> dict[str, bytes]:
        return {f"{run.config.run_name}/{name}": data for run in runs for name, data in manifests(run.storage).items()}

    for point in (*KILL_POINTS, None):
        before = committed()
        code = launcher.run(argv, kill_at=point)
        assert code == (KILLED if point else 0), (
            f"{point}: exit {code}\n{tail(launcher.logs / f'cli-{launcher.count:03d}.log')}"
        )
        for run in runs:
            check_visible(run.storage)
        after = committed()
        assert {name: after.get(name) for name in before} == before  # committed work is never redone
    TALLY.kills += len(KILL_POINTS)

    for run in runs:
        check_complete(run)
    root = tmp_path / "experiment"
    assert not temporaries(Storage(str(root)))  # the cells' and the shared stages' alike
    assert len(list(root.glob("stages/generate/*/shards/*.manifest.json"))) == 2 * 6  # one copy per seed
    assert len(list(root.glob("stages/train/*/train/report.json"))) == 4
    report = json.loads((root / "report.json").read_text())
    assert all(None not in row["values"] and row["n"] == 2 for row in report["results"])
