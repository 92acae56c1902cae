"""`synthvision experiment FILE` end to end on tiny models: every arm at every seed, shared stages
computed once, a report with intervals and verdicts, and a rerun that computes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, TaskRunFilter
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import ModelCounter, write_experiment

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def tiny_base(folder: Path, make_config) -> dict:
    """The tiny test config as a base config file would hold it."""
    return make_config(folder / "unused").model_dump(mode="json", exclude={"base_dir", "output", "shared_stages"})


def test_an_experiment_shares_the_data_of_training_only_arms_and_reports_verdicts(make_config, tmp_path, monkeypatch):
    path = write_experiment(tmp_path, tiny_base(tmp_path, make_config))
    counter = ModelCounter(monkeypatch)
    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 0, result.output
    # 2 seeds x 12 images: the slow arm trains on the default arm's shards and scores of the same seed
    assert counter.images == 24
    root = tmp_path / "experiment"
    generated = sorted(p.relative_to(root).parts[:3] for p in root.glob("stages/generate/*/shards/*.tar"))
    assert len(generated) == 2 * 3 and len(set(generated)) == 2  # 3 shards in each seed's one copy
    assert len(list(root.glob("stages/train/*/train/report.json"))) == 4  # training differs in every cell
    report = json.loads((root / "report.json").read_text())
    assert report["copies"] == {"prompts": 2, "generate": 2, "score": 2, "train": 4}
    assert sorted(shared["cells"] for shared in report["shared"] if shared["stage"] == "generate") == [
        ["default-seed0", "slow-seed0"],
        ["default-seed1", "slow-seed1"],
    ]
    rows = {row["arm"]: row for row in report["results"]}
    trained = {}  # each cell's top-1, read from its train report
    for file in root.glob("stages/train/*/train/report.json"):
        record = json.loads(file.read_text())
        trained[record["run_name"]] = record["evaluation"]["tuned_top1"]
    for arm in ("default", "slow"):
        assert rows[arm]["values"] == [trained[f"tiny-{arm}-seed0"], trained[f"tiny-{arm}-seed1"]]
    assert json.loads((root / "runs" / "slow-seed1" / "run.json").read_text())["config"]["shared_stages"] == str(
        root / "stages"
    )
    assert rows["default"]["n"] == 2 and rows["default"]["verdict"] is None
    slow = rows["slow"]
    pairs = [a - b for a, b in zip(slow["values"], rows["default"]["values"], strict=True)]
    assert slow["difference"] == pytest.approx(sum(pairs) / 2)
    assert slow["verdict"] in ("better", "worse", "no detectable difference")
    # cost: each cell's training is its own (timed in its report); the data stages are shared by the
    # two arms of a seed, so the experiment spent half of what its cells' data would have cost apart
    training = sum(json.loads(f.read_text())["busy_s"] for f in root.glob("stages/train/*/train/report.json"))
    assert training > 0 and report["slot_seconds"]["default"] > 0
    data_apart = report["slot_seconds_apart"] - training
    assert report["slot_seconds_spent"] - training == pytest.approx(data_apart / 2)
    markdown = (root / "report.md").read_text()
    assert (
        "| slow |" in markdown
        and "generate | 2 of 4 | default-seed0, slow-seed0; default-seed1, slow-seed1" in markdown
    )
    assert (root / "experiment.png").read_bytes().startswith(b"\x89PNG")
    assert result.output.splitlines()[-2].startswith("tiny: top1 against default over 2 seed(s): slow ")
    assert result.output.splitlines()[-1] == f"report: {root}/report.md"

    status = CliRunner().invoke(app, ["status", str(path)])
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert lines[0].split() == ["cell", "prompts", "generate", "score", "train"]
    assert lines[1].split() == ["default-seed0", "1/1", "3/3", "3/3", "1/1"]
    assert lines[3].split() == ["slow-seed0", "1/1^", "3/3^", "3/3^", "1/1"]  # its data is default-seed0's
    assert "generate: 2 copies for 4 cells" in lines and lines[-1] == "writer: none (no run holds the output)"

    again = CliRunner().invoke(app, ["experiment", str(path)])
    assert again.exit_code == 0, again.output
    assert counter.images == 24  # everything was committed: no image generated again
    with get_client(sync_client=True) as client:  # and no cell's sub-flow ran again
        names = [run.name for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"like_": "tiny: "}))]
    assert sorted(names) == ["tiny: default seed 0", "tiny: default seed 1", "tiny: slow seed 0", "tiny: slow seed 1"]
    assert json.loads((root / "report.json").read_text())["results"] == report["results"]

    # 4 training-only arms x 5 seeds in another experiment naming the first one's stages folder: each
    # seed's data is generated once in all (seeds 0 and 1 come from the first experiment), and the
    # trains the first experiment committed (default and slow at seeds 0 and 1) are read, not redone
    (tmp_path / "wide").mkdir()
    wide = write_experiment(
        tmp_path / "wide",
        tiny_base(tmp_path, make_config),
        name="wide",
        stages="../experiment/stages",
        seeds=[0, 1, 2, 3, 4],
        arms={
            "default": {},
            "slow": {"training.lr": 0.0001},
            "fast": {"training.lr": 0.01},
            "ce": {"training.loss": "ce"},
        },
    )
    result = CliRunner().invoke(app, ["experiment", str(wide)])
    assert result.exit_code == 0, result.output
    assert counter.images == 24 + 3 * 12
    assert len({p.parts[-3] for p in root.glob("stages/generate/*/shards/*.tar")}) == 5
    assert len(list(root.glob("stages/train/*/train/report.json"))) == 4 * 5
    assert not (root / "stages" / "lock.json").exists() and not (tmp_path / "wide" / "experiment" / "stages").exists()
    with get_client(sync_client=True) as client:
        generated = client.read_task_runs(
            flow_run_filter=FlowRunFilter(name={"like_": "wide-%-generate"}),
            task_run_filter=TaskRunFilter(name={"like_": "generate-shard"}),
        )
    assert len(generated) == 3 * 3  # the shards of seeds 2, 3 and 4, each once
    wide_report = json.loads((tmp_path / "wide" / "experiment" / "report.json").read_text())
    assert wide_report["copies"] == {"prompts": 5, "generate": 5, "score": 5, "train": 20}
