"""Quota mode as a user runs it: a config file with `shards.top_up`, `synthvision run`, then
`synthvision status`, against a scorer whose pass rate differs per class."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from synthvision.core.config import load_config
from synthvision.run import Run
from synthvision.stages import score
from tests.flows.test_flows import artifacts_of
from tests.stages.test_quotas import QUOTA, pass_by_class

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.mark.slow
def test_a_quota_run_tops_up_its_short_classes_shows_them_and_reruns_as_a_no_op(tmp_path, make_config, monkeypatch):
    monkeypatch.setattr(score, "clip_filter", pass_by_class)
    path = tmp_path / "quota.yaml"
    path.write_text(yaml.safe_dump(make_config(run_name="quota", **QUOTA).model_dump(mode="json")))

    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    run = Run(load_config(path))
    # round 1 (hand-computed in tests/stages/test_quotas.py): 2 green and 12 blue, 4 shards; blue
    # never passes and stops at its cap of 16
    assert [top_up.images for top_up in run.top_ups] == [(0, 2, 12)]
    assert [row.missing for row in run.status()] == [0, 0, 0, 0] and run.num_shards == 7
    report = run.storage.read_json("train/report.json")
    # 4 red and 4 green pass; blue, short at its cap, is topped up by CF's rule with its 4 most confident
    assert [report["data"][key] for key in ("synthetic_images", "passed_filter", "trained_on")] == [26, 8, 12]

    rows = json.loads(artifacts_of(load_config(path))["quota"].data)  # the run page's table, after the last round
    assert [list(row.values()) for row in rows] == [
        ["red", "4/4", 4, 4, "100%", 0],
        ["green", "4/4", 6, 6, "67%", 0],
        ["blue", "0/4", 16, 16, "0%", 4],
    ]

    status = CliRunner().invoke(app, ["status", str(path)])
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert "top-up (quota): 1 round(s) after the first (at most 5), at most 16 images per class" in lines
    assert ["red", "4/4", "4", "4", "100%", "0"] in [line.split() for line in lines]

    again = CliRunner().invoke(app, ["run", str(path)])
    assert again.exit_code == 0, again.output
    assert len(Run(load_config(path)).top_ups) == 1 and run.storage.list("shards/top-ups") == ["round-0001.json"]
