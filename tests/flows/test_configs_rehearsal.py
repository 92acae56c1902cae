"""Every file in configs/ runs as a user runs it: read from its file, the commands its `# Run:` line
names typed into the `synthvision` command, its models loaded through their real ids (open_clip's RN50
with the `openai` tag, the LE model's and the diffusers pipeline's hub ids) from an offline Hugging Face
cache built under those ids, GLIDE from a folder in the released layout. Only sizes are shrunk by
--set (images per class, shard size, steps, epochs, image sizes, shots, small real image folders), and
GLIDE's folder and the data sets a user must provide are given. The list is configs/*.yaml itself:
a config added later is rehearsed too.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from synthvision.core.config import RunConfig, load_config
from synthvision.core.label_spaces import load_label_space
from synthvision.core.stage_table import stage, stage_hash
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
TOY_GLIDE = REPO / "synthvision" / "data" / "toy" / "glide"  # GLIDE's released layout, at toy size
RUN_LINE = re.compile(r"synthvision (\w+) CONFIG")
REPORTING = ("train", "fewshot", "quality", "pretrain", "transfer", "scratch")  # commands that commit a report


def commands(path: Path) -> list[str]:
    """The commands the config's header tells a user to type, in order."""
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    start = next((i for i, line in enumerate(header) if line.startswith("# Run:")), None)
    assert start is not None, f"{path.name}: no '# Run: synthvision ... CONFIG' line in its header"
    text = header[start]
    for line in header[start + 1 :]:  # continuation lines are indented under "Run:"
        if not line.startswith("#     "):
            break
        text += line
    found = RUN_LINE.findall(text)
    assert found, f"{path.name}: its Run: line names no command"
    return found


def image_folder(root: Path, classes: tuple[str, ...], per_class: int, seed: int) -> str:
    """A labelled image folder (ROOT/<class>/<i>.png) of small random images."""
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return str(root)


def missing_here(value: str | None) -> bool:
    """A data set the config names that is not on this machine (/data/...): the user provides it."""
    return bool(value) and not Path(value).exists()


def shrunk(config: RunConfig, data: Path) -> list[str]:
    """--set overrides of sizes that make `config` run in seconds on a CPU, and the data a user provides."""
    classes = load_label_space(config.label_space).classes
    per_class = 1 if len(classes) > 50 else 2
    total = len(classes) * per_class
    sets = [
        f"shards.images_per_class={per_class}",
        f"shards.shard_size={min(config.shards.shard_size, max(total // 2, 1))}",
        "training.epochs=1",
        "training.batch_size=8",
    ]
    if config.prompts.strategy != "basic":
        sets += ["prompts.sentences_per_class=1", "prompts.oversample=0"]
    generator = config.generator
    if generator.backend == "glide":
        if missing_here(generator.model):
            sets.append(f"generator.model={TOY_GLIDE}")
        sets += ["generator.resolution=32", "generator.glide.base_respacing=2", "generator.glide.upsample_respacing=2"]
    elif generator.backend == "diffusers":
        sets += ["generator.steps=2", "generator.resolution=32"]
    if missing_here(config.evaluation.test_set):
        sets.append(f"evaluation.test_set={image_folder(data / 'test', classes, 1, 0)}")
    if config.fewshot is not None:
        sets += ["fewshot.shots=[1]", "fewshot.epochs=1", "fewshot.synthetic_batch_size=8"]
        if config.fewshot.real_guidance.enabled:
            sets.append("fewshot.real_guidance.shots=1")
        if missing_here(config.fewshot.train_set):
            sets.append(f"fewshot.train_set={image_folder(data / 'train', classes, 2, 1)}")
    for job in ("pretrain", "transfer", "scratch"):
        section = getattr(config, job)
        if section is not None:
            sets += [
                f"{job}.optim.epochs=1",
                f"{job}.optim.batch_size={max(2, min(64, total // 2))}",
                f"{job}.image_size=32",
            ]
    if config.pretrain is not None and config.pretrain.method == "moco":
        sets += ["pretrain.moco.queue_size=16", "pretrain.moco.mlp_hidden=32"]
    if config.transfer is not None:
        transfer_classes = load_label_space(config.transfer.label_space).classes
        for field in ("train_set", "test_set"):
            if missing_here(getattr(config.transfer, field)):
                folder = image_folder(data / f"transfer-{field}", transfer_classes, 1, 2)
                sets.append(f"transfer.{field}={folder}")
    if config.scratch is not None:
        sets.append("scratch.real_per_class=[1]")
        if missing_here(config.scratch.real_train_set):
            sets.append(f"scratch.real_train_set={image_folder(data / 'scratch-train', classes, 1, 3)}")
    return sets


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """Where the rehearsal's runs write: one output per data (prompts, shards, scores), so configs whose
    data stages agree share it, as one user's runs would (the ImageNet pre-training configs differ only
    in the method; EuroSAT's zero-shot and few-shot configs in what follows scoring)."""
    return tmp_path_factory.mktemp("outputs")


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_runs_as_a_user_runs_it(path, tmp_path, outputs, offline_hub, prefect_server):
    from flows.cli import app

    sets = shrunk(load_config(path), tmp_path)
    data = load_config(path, sets)
    out = outputs / "-".join(stage_hash(data, name) for name in ("prompts", "generate", "score"))
    overrides = [item for override in [*sets, f"output={out}"] for item in ("--set", override)]
    for command in commands(path):
        result = CliRunner().invoke(app, [command, str(path), *overrides], catch_exceptions=False)
        assert result.exit_code == 0, f"synthvision {command} {path.name}: {result.output[-2000:]}"
    written = [stage(command).report_file for command in commands(path) if command in REPORTING]
    written += ["train/report.json"] if "run" in commands(path) else ["shards/shard-00000.manifest.json"]
    for file in written:
        json.loads((out / file).read_text())  # committed, and readable
    assert_no_absolute_paths(out, (str(REPO), str(tmp_path), str(outputs)))


def assert_no_absolute_paths(output: Path, roots: tuple[str, ...]) -> None:
    """No sample JSON, manifest or report names a path of the machine that wrote it (run.json, the
    record of the config as given, and lock.json, the writer's host and pid, do by design)."""
    absolute = re.compile("|".join(rf"(?<![\w.]){re.escape(root)}" for root in roots))
    texts = {
        str(file): file.read_text()
        for file in output.rglob("*")
        if file.suffix in (".json", ".md") and file.name not in ("run.json", "lock.json")
    }
    for tar in output.glob("shards/*.tar"):
        with tarfile.open(tar) as members:
            for member in members.getmembers():
                if member.name.endswith(".json"):
                    texts[f"{tar}:{member.name}"] = members.extractfile(member).read().decode()
    found = {name: absolute.search(text)[0] for name, text in texts.items() if absolute.search(text)}
    assert found == {}
