"""The one rule for fields that may be a tag, a hub id, a built-in name or a local path: a name stays
what it is written as; a relative path is found next to the config file (or, given with --set, in the
working directory); something written as a path is made absolute, existing or not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from synthvision.core.config import load_config
from synthvision.core.paths import PATHS, REFERENCES
from tests.conftest import REPO

# a value each field takes as a name (a tag, a built-in, a model name) and as a hub id
NAMES = {
    "label_space": ("cifar10", None),
    "transfer.label_space": ("cifar100", None),
    "generator.model": ("tiny", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
    "prompts.sentence_model.model": ("tiny", "mrm8488/t5-base-finetuned-common_gen"),
    "prompts.llm.model": ("tiny", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "clip.model": ("RN50", None),
    "clip.pretrained": ("openai", "timm/resnet50_clip.openai"),
}
# the sections a field needs beside it to be a valid config
NEEDS = {"transfer.label_space": {"transfer": {"train_set": "/data/train", "test_set": "/data/test"}}}


def test_every_field_that_may_be_a_name_or_a_path_is_tested():
    assert set(NAMES) == set(REFERENCES)


def nested(name: str, value: str) -> dict:
    *parents, leaf = name.split(".")
    data: dict = {leaf: value}
    for part in reversed(parents):
        data = {part: data}
    return data


def merged(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def field(config, name: str) -> str:
    node = config
    for part in name.split("."):
        node = getattr(node, part)
    return node


def load_with(tmp_path: Path, name: str, value: str, *, via_set: bool) -> object:
    """`name: value` read from a config file in `tmp_path/configs`, or given with --set from `tmp_path/cwd`."""
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    data = merged({"output": "out"}, NEEDS.get(name, {}), {} if via_set else nested(name, value))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, [f"{name}={value}"] if via_set else None)


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """configs/ holding a local model folder and a label file; a working directory holding the same."""
    for folder in (tmp_path / "configs", tmp_path / "cwd"):
        (folder / "weights").mkdir(parents=True)
        (folder / "weights" / "model.bin").write_bytes(b"x")
        (folder / "classes.txt").write_text("a\nb\n")
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


@pytest.mark.parametrize("via_set", [False, True], ids=["file", "set"])
@pytest.mark.parametrize("name", REFERENCES)
def test_a_tag_or_built_in_name_stays_a_name(layout, name, via_set):
    tag = NAMES[name][0]
    assert field(load_with(layout, name, tag, via_set=via_set), name) == tag


@pytest.mark.parametrize("via_set", [False, True], ids=["file", "set"])
@pytest.mark.parametrize("name", [name for name in REFERENCES if NAMES[name][1]])
def test_a_hub_id_stays_a_hub_id(layout, name, via_set):
    hub_id = NAMES[name][1]
    assert field(load_with(layout, name, hub_id, via_set=via_set), name) == hub_id


@pytest.mark.parametrize("via_set", [False, True], ids=["file", "set"])
@pytest.mark.parametrize("name", REFERENCES)
def test_an_existing_relative_path_is_found_beside_the_config_or_in_the_working_directory(layout, name, via_set):
    target = "classes.txt" if name.endswith("label_space") else "weights/model.bin"
    where = layout / ("cwd" if via_set else "configs")
    assert field(load_with(layout, name, target, via_set=via_set), name) == str(where / target)
    assert field(load_with(layout, name, f"./{target}", via_set=via_set), name) == str(where / target)


@pytest.mark.parametrize("via_set", [False, True], ids=["file", "set"])
@pytest.mark.parametrize("name", REFERENCES)
def test_a_missing_path_written_as_one_is_made_absolute_and_a_bare_one_stays(layout, name, via_set):
    where = layout / ("cwd" if via_set else "configs")
    assert field(load_with(layout, name, "./missing/model", via_set=via_set), name) == str(where / "missing/model")
    assert field(load_with(layout, name, "../elsewhere/x", via_set=via_set), name) == str(layout / "elsewhere/x")
    # not written as a path and not there: as written (a hub id or a name, whose loader says what it lacks)
    assert field(load_with(layout, name, "missing/model", via_set=via_set), name) == "missing/model"


@pytest.mark.parametrize("via_set", [False, True], ids=["file", "set"])
def test_local_dir_marks_a_path_and_keeps_its_marker(layout, via_set):
    where = layout / ("cwd" if via_set else "configs")
    config = load_with(layout, "clip.model", "local-dir:weights", via_set=via_set)
    assert config.clip.model == f"local-dir:{where / 'weights'}"


@pytest.mark.parametrize("via_set", [False, True], ids=["file", "set"])
@pytest.mark.parametrize("name", [name for name in PATHS if name.startswith(("evaluation", "pretrain"))])
def test_fields_that_are_always_paths_are_made_absolute_even_when_missing(layout, name, via_set):
    where = layout / ("cwd" if via_set else "configs")
    extra = {"pretrain": {}} if name.startswith("pretrain") else {}
    folder = layout / "configs"
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(merged({"output": "out"}, extra, {} if via_set else nested(name, "test"))))
    config = load_config(path, [f"{name}=test"] if via_set else None)
    assert field(config, name) == str(where / "test")


def test_a_set_override_resolves_only_the_field_it_sets(layout):
    """A tag read from the file is not looked up in the working directory when another field is set."""
    (layout / "cwd" / "openai").mkdir()  # a folder named like the tag, where the command runs
    path = layout / "configs" / "config.yaml"
    path.write_text(yaml.safe_dump({"output": "out", "clip": {"model": "RN50", "pretrained": "openai"}}))
    config = load_config(path, ["training.epochs=1"])
    assert config.clip.pretrained == "openai"


@pytest.mark.parametrize("path", sorted(Path("configs").glob("*.yaml")), ids=lambda p: p.name)
def test_openai_weights_run_with_quick_gelu_in_every_shipped_config(path, tmp_path, monkeypatch):
    path = REPO / path
    config = load_config(path)
    if config.clip.pretrained is not None:
        assert config.clip.pretrained == "openai", "a shipped config names another tag: extend this test"
        assert config.clip.uses_quick_gelu
    monkeypatch.chdir(tmp_path)
    from_set = load_config(path, ["clip.model=RN50", "clip.pretrained=openai"])
    assert (from_set.clip.pretrained, from_set.clip.uses_quick_gelu) == ("openai", True)
