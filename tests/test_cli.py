"""The `synthvision` command as a user runs it (a subprocess), including the README's demo command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def cli(*args: str, prefect_url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PREFECT_API_URL": prefect_url} if prefect_url else {})}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_demo_runs_end_to_end_and_status_reads_storage(tmp_path, prefect_server):
    out = tmp_path / "demo"
    result = cli("run", "configs/demo.yaml", "--set", f"output={out}", prefect_url=prefect_server)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"report: {out}/train/report.md" in result.stdout
    report = json.loads((out / "train" / "report.json").read_text())
    assert report["data"]["synthetic_images"] == 64 and report["evaluation"]["test_images"] == 40

    status = cli("status", "configs/demo.yaml", "--set", f"output={out}")
    assert status.returncode == 0
    assert status.stdout.split("\n")[2].split() == ["generate", "4", "4", "0"]
    status = cli("status", "configs/demo.yaml", "--set", f"output={out}", "--set", "generator.steps=5")
    assert status.stdout.split("\n")[2].split() == ["generate", "4", "0", "4"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("generator.steps=0", "error: invalid config configs/demo.yaml: generator.steps: Input should be greater than 0"),
        ("label_space=/nope/classes.txt", "error: label_space '/nope/classes.txt' is neither a built-in"),
        ("shards.shard_size=100", "error: shards.shard_size (100) is larger than the run (64 images"),
        ("clip.model=ViT-Nope", "error: clip.model: unknown open_clip model 'ViT-Nope'"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, override, message):
    result = cli("run", "configs/demo.yaml", "--set", f"output={tmp_path}", "--set", override)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # failed before any work
