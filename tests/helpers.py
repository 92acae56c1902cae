"""Test helpers that are not fixtures."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from collections import Counter
from pathlib import Path

from synthvision import run
from synthvision.models import clip as clip_model
from synthvision.models.generators import base as generators
from synthvision.models.generators.diffusers_backend import DiffusersGenerator


class ModelCounter:
    """Counts model loads and generated images in this process, starting from empty model caches,
    so that a test sees exactly the model work a flow run does."""

    def __init__(self, monkeypatch):
        generators.load_generator.cache_clear()
        clip_model.load_clip.cache_clear()
        run.open_run.cache_clear()
        self.loads: Counter[str] = Counter()
        self.images = 0
        real_from_config, real_load, real_generate = (
            DiffusersGenerator.from_config.__func__,
            clip_model.ClipModel.load.__func__,
            DiffusersGenerator.generate,
        )

        def from_config(cls, config):
            self.loads["generator"] += 1
            return real_from_config(cls, config)

        def load(cls, config):
            self.loads["clip"] += 1
            return real_load(cls, config)

        def generate(generator, prompts, seeds):
            self.images += len(prompts)
            return real_generate(generator, prompts, seeds)

        monkeypatch.setattr(DiffusersGenerator, "from_config", classmethod(from_config))
        monkeypatch.setattr(clip_model.ClipModel, "load", classmethod(load))
        monkeypatch.setattr(DiffusersGenerator, "generate", generate)


def check_ui_contents(artifacts: dict, shards: int, images: int) -> None:
    """What the Prefect UI shows of a finished run, checked through the API: each shard stage's progress
    says its counts, a rate and an ETA; no table has a row without every column or an empty cell; the
    contact sheet is an image the browser can decode from the markdown itself."""
    from PIL import Image

    for stage in ("generate", "score"):
        progress = artifacts[f"{stage}-progress"]
        assert progress.data == 100.0, progress
        for part in (f"{shards}/{shards} shards", f"{images}/{images} images", " images/s", "ETA 0s", "0 failed"):
            assert part in progress.description, progress.description
    for key, artifact in artifacts.items():
        if artifact.type != "table":
            continue
        rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        columns = set().union(*rows)
        for row in rows:
            assert set(row) == columns, (key, row)
            assert all(value not in (None, "", [], {}) for value in row.values()), (key, row)
    for key, artifact in artifacts.items():  # the UI serves no file of the output: images are inline
        if artifact.type == "markdown":
            assert not re.search(r"!\[[^]]*\]\((?!data:image/)", artifact.data), (key, artifact.data[:300])
    inline = re.search(r"!\[[^]]*\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", artifacts["contact-sheet"].data)
    assert inline, artifacts["contact-sheet"].data[:300]
    with Image.open(io.BytesIO(base64.b64decode(inline.group(1)))) as sheet:
        assert sheet.width > 0 and sheet.height > 0


def hub_cache_snapshot(cache: Path, repo_id: str, files: dict[str, bytes], commit: str | None = None) -> str:
    """Write `files` into a Hugging Face hub cache (`HF_HUB_CACHE` layout: blobs, a snapshot per commit,
    refs/main) as a download of `repo_id` would; returns the commit. Offline (`HF_HUB_OFFLINE=1`),
    `hf_hub_download`, `snapshot_download` and every `from_pretrained` find them under the real id."""
    digest = hashlib.sha1(repo_id.encode())
    for name, data in sorted(files.items()):
        digest.update(name.encode() + hashlib.sha1(data).digest())
    commit = commit or digest.hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


TINY_OPTIM = {"epochs": 2, "batch_size": 4, "lr": 0.01, "lr_milestones": [1]}  # a ResNet job in seconds


def generated_run(config, scored: bool = False) -> run.Run:
    """A run of `config` with its prompts and every shard generated (and scored), each unit through
    `ensure` as a task would."""
    from synthvision.stages.units import ensure

    made = run.Run(config)
    ensure(made, "prompts")
    for index in range(made.plan.num_shards):
        ensure(made, "generate", index)
        if scored:
            ensure(made, "score", index)
    return made


def write_experiment(folder: Path, base: dict, **fields) -> Path:
    """`folder/experiment.yaml` over `folder/base.yaml` (`base`): arms `default` (the baseline) and
    `slow` (training.lr only), seeds 0 and 1, the train stage's top-1; `fields` replace any of these."""
    import yaml

    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    experiment = {
        "name": "tiny",
        "base": "base.yaml",
        "output": "experiment",
        "seeds": [0, 1],
        "baseline": "default",
        "arms": {"default": {}, "slow": {"training.lr": 0.0001}},
        "metrics": {"top1": {"path": "train.evaluation.tuned_top1"}},
        **fields,
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path
