"""The `synthvision` command as a user runs it (a subprocess): one-line errors for user mistakes.
(The README's demo command runs against a real Prefect server in test_prefect_server.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "generator.steps=0",
            "error: invalid config configs/demo.yaml: generator.steps: Input should be greater than 0",
        ),
        ("label_space=/nope/classes.txt", "error: label_space '/nope/classes.txt' is neither a built-in"),
        ("shards.shard_size=1000", "error: shards.shard_size (1000) is larger than the run (500 images"),
        ("clip.model=ViT-Nope", "error: clip.model: unknown open_clip model 'ViT-Nope'"),
        (
            "orchestration.engine=processes;orchestration.devices=[cuda:3]",
            "error: device 'cuda:3' asked for, but no CUDA device is available here",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, override, message):
    overrides = [arg for part in override.split(";") for arg in ("--set", part)]
    result = cli("run", "configs/demo.yaml", "--set", f"output={tmp_path}", *overrides)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # failed before any work


def test_fewshot_without_its_section_is_a_one_line_error(tmp_path):
    result = cli("fewshot", "configs/demo.yaml", "--set", f"output={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no fewshot section (set at least fewshot.train_set)")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        ("pretrain", "add `pretrain: {}` for the defaults"),
        ("transfer", "set at least transfer.label_space, transfer.train_set, transfer.test_set"),
        ("scratch", "add `scratch: {}` for the defaults"),
    ],
)
def test_resnet_jobs_without_their_section_are_one_line_errors(tmp_path, command, hint):
    result = cli(command, "configs/demo.yaml", "--set", f"output={tmp_path / 'run'}")
    assert (result.returncode, result.stderr.strip().splitlines()) == (
        2,
        [f"error: configs/demo.yaml: no {command} section ({hint})"],
    )


def test_the_demo_config_works_from_any_directory(tmp_path):
    """Its paths are relative to configs/: `status` from elsewhere finds the label space, models and test
    set (checked before any work), and its output is the repository's runs/demo, not one under the cwd."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = cli("status", str(REPO / "configs" / "demo.yaml"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].split()[:4] == ["stage", "planned", "committed", "missing"]
    assert not (tmp_path / "runs").exists() and not (REPO / "configs" / "runs").exists()
