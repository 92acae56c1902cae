"""Lineage names models the same on every machine: a hub id with its cached commit, a local folder by
its path relative to the config and a digest of its bytes, a tag as a tag; never an absolute path."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import yaml

from synthvision.core.config import load_config
from synthvision.core.data_config import ClipConfig, GeneratorConfig
from synthvision.models.clip import save_clip, tiny_clip_config
from synthvision.models.generators.tiny import build_tiny_pipeline
from synthvision.models.lineage import clip_ref, generator_ref, model_ref
from synthvision.run import Run
from synthvision.stages.units import ensure
from tests.helpers import hub_cache_snapshot


def test_a_tag_and_a_built_in_name_stay_as_they_are():
    assert model_ref("tiny", "/anywhere") == "tiny"
    assert model_ref("RN50", "/anywhere") == "RN50"
    assert generator_ref(GeneratorConfig(backend="tiny"), None) == "tiny"


def test_a_hub_id_is_named_with_the_commit_the_local_cache_holds(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_ref("org/pipe", None) == "org/pipe"  # not cached: the id alone
    commit = hub_cache_snapshot(tmp_path / "hub", "org/pipe", {"model_index.json": b"{}"})
    assert model_ref("org/pipe", None) == f"org/pipe@{commit}"
    assert generator_ref(GeneratorConfig(backend="diffusers", model="org/pipe"), None) == f"diffusers:org/pipe@{commit}"
    hub_cache_snapshot(tmp_path / "hub", "timm/resnet50_clip.openai", {"open_clip_model.safetensors": b"x"}, commit)
    assert clip_ref(ClipConfig(model="RN50", pretrained="openai"), None) == (
        f"RN50/openai (timm/resnet50_clip.openai@{commit})"
    )


def test_a_local_folder_is_named_relative_to_the_config_with_a_digest_of_its_bytes(tmp_path):
    folder = tmp_path / "models" / "glide"
    folder.mkdir(parents=True)
    (folder / "base.pt").write_bytes(b"weights")
    base_dir = str(tmp_path / "configs")
    first = model_ref(str(folder), base_dir)
    assert first.startswith("../models/glide@sha256:") and len(first.split("sha256:")[1]) == 16
    assert model_ref(f"local-dir:{folder}", base_dir) == f"local-dir:{first}"
    (folder / "base.pt").write_bytes(b"other weights")
    assert model_ref(str(folder), base_dir) != first  # other bytes: another model


def checkout(root: Path, colours_file: Path) -> Path:
    """A config in root/configs naming a diffusers pipeline folder and an open_clip folder in root/models."""
    build_tiny_pipeline().save_pretrained(root / "models" / "pipe")
    import open_clip
    import torch

    torch.manual_seed(0)
    cfg = tiny_clip_config()
    save_clip(open_clip.CLIP(**cfg), cfg, root / "models" / "clip")
    (root / "configs").mkdir()
    shutil.copy(colours_file, root / "configs" / "colours.txt")
    config = {
        "run_name": "lineage",
        "output": "../out",
        "label_space": "colours.txt",
        "generator": {"backend": "diffusers", "model": "../models/pipe", "steps": 2, "resolution": 32},
        "shards": {"images_per_class": 2, "shard_size": 3},
        "clip": {"model": "local-dir:../models/clip"},
    }
    (root / "configs" / "run.yaml").write_text(yaml.safe_dump(config))
    return root / "configs" / "run.yaml"


def test_two_checkouts_write_byte_identical_samples_and_the_same_lineage(tmp_path, colours_file):
    written = []
    for name in ("a", "elsewhere/b"):
        run = Run(load_config(checkout(tmp_path / name, colours_file)))
        ensure(run, "prompts")
        manifests = [(ensure(run, "generate", i)[0], ensure(run, "score", i)[0]) for i in range(run.num_shards)]
        tars = [(Path(run.config.output) / "shards" / f"{m.shard}.tar").read_bytes() for m, _ in manifests]
        written.append((tars, [(m.models, s.models) for m, s in manifests], run.config.output))
    (tars_a, models_a, out_a), (tars_b, models_b, _) = written
    assert tars_a == tars_b  # every sample's JSON (and image) byte for byte
    assert models_a == models_b
    generator, clip = models_a[0][0]["generator"], models_a[0][1]["clip"]
    assert generator.startswith("diffusers:../models/pipe@sha256:")
    assert clip.startswith("local-dir:../models/clip@sha256:")
    with tarfile.open(Path(out_a) / "shards" / "shard-00000.tar") as tar:
        meta = json.loads(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith(".json"))).read())
    assert meta["generator"] == generator
    for path in Path(out_a).rglob("*"):
        if path.is_file() and path.suffix in (".json", ".tar"):
            assert str(tmp_path).encode() not in path.read_bytes(), path
