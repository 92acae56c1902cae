"""The shard cache key: present only for committed output, specific to the stage and the output root."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest

from synthvision.run import open_run
from synthvision.stages import generate, prompts, score
from tasks.policy import CommittedShard
from tests.conftest import tiny_config


def keys(config, index=0):
    inputs = {"config": config, "shard_index": index}
    return [CommittedShard(stage=stage).compute_key(task_context(), inputs, {}) for stage in ("generate", "score")]


def task_context():
    """What the policy reads of Prefect's task run context: the task run's id."""
    return SimpleNamespace(task_run=SimpleNamespace(id=uuid4()))


def test_keys_exist_only_for_committed_output_of_their_own_stage(make_config):
    config = make_config()
    run = open_run(config)
    prompts.ensure(run)
    assert keys(config) == [None, None]
    generate.ensure(run, 0)
    generate_key, score_key = keys(config)
    assert generate_key is not None and score_key is None  # shard committed, scores not
    score.ensure(run, 0)
    assert keys(config)[0] == generate_key and keys(config)[1] not in (None, generate_key)
    assert keys(config, index=1) == [None, None]


def test_same_relative_output_in_two_folders_gives_different_keys(colours_file, tmp_path, monkeypatch):
    found = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        config = tiny_config(Path("runs/same"), colours_file)
        assert config.output == str(tmp_path / folder / "runs" / "same")
        run = open_run(config)
        prompts.ensure(run)
        generate.ensure(run, 0)
        found.append(keys(config)[0])
    assert None not in found and found[0] != found[1]


def test_stage_must_be_named():
    with pytest.raises(ValueError, match="must be 'generate' or 'score'"):
        CommittedShard("score")  # positional: would set CachePolicy.key_storage instead
