import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from synthvision.core.config import RunConfig, apply_overrides, load_config, parse_config
from synthvision.core.errors import ConfigError
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_demo_config_loads_and_overrides_apply():
    config = load_config("configs/demo.yaml", ["training.epochs=5", "output=/tmp/x", "filter.threshold=0.5"])
    assert config.training.epochs == 5
    assert config.output == "/tmp/x"
    assert config.filter.threshold == 0.5


def test_paper_defaults():
    config = parse_config({})
    assert (config.training.lr, config.training.weight_decay, config.training.epochs, config.training.batch_size) == (
        2e-3,
        0.1,
        30,
        512,
    )
    assert config.training.temperature == 2.0
    assert config.generator.guidance_scale == 3.0
    assert config.shards.images_per_class == 2000
    assert config.prompts.sentences_per_class == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("generator:\n  steps: 0\n", "generator.steps: Input should be greater than 0"),
        ("generator:\n  guidence_scale: 2\n", "generator.guidence_scale: unknown field"),
        ("prompts:\n  template: 'a photo'\n", "prompts.template: template 'a photo' must contain exactly one '{}'"),
        ("prompts:\n  strategy: fancy\n", "prompts.strategy: Input should be 'basic', 'language_enhancement' or 'llm'"),
        ("generator:\n  backend: diffusers\n", "generator.model is required"),
        ("generator:\n  backend: glide\n", "generator.model is required when generator.backend is 'glide'"),
        (
            "generator:\n  glide:\n    base_respacing: ddim999\n",
            "generator.glide.base_respacing: respacing 'ddim999': no integer stride",
        ),
        (
            "generator:\n  glide:\n    upsample_respacing: 1\n",
            "generator.glide.upsample_respacing: respacing '1' keeps 1 step: GLIDE's sampler needs at least 2",
        ),
        ("shards:\n  shard_size: -3\n", "shards.shard_size: Input should be greater than 0"),
        ("clip:\n  templates: []\n", "clip.templates: clip.templates must not be empty"),
        (
            "shards:\n  images_per_class: 10\n  top_up: {max_per_class: 5}\n",
            "top_up.max_per_class (5) is below images_per_class (10), the first round",
        ),
        (
            "shards:\n  top_up: {max_per_class: 5000}\nfilter: {per_class: null}\n",
            "it needs filter.clip_filter on and filter.per_class set",
        ),
        (
            "shards:\n  top_up: {max_per_class: 5000, budget_per_class: 3000}\n",
            "top_up.budget_per_class is set for, and only for, policy: adaptive",
        ),
        (
            "shards:\n  top_up: {policy: adaptive, max_per_class: 5000, budget_per_class: 3000, shots: 4}\n",
            "top_up.shots is set for, and only for, signal: fewshot",
        ),
        (
            "shards:\n  top_up: {max_per_class: 5000, signal: fewshot, shots: 4}\nfilter: {per_class: 10}\n",
            "top_up.signal fewshot is a signal of policy: adaptive",
        ),
        (
            "shards:\n  top_up: {policy: adaptive, max_per_class: 5000, budget_per_class: 3000, signal: fewshot, "
            "shots: 4}\n",
            "shards.top_up.signal fewshot measures each class's error on real shots: it needs a fewshot section",
        ),
        ("- a\n- b\n", "must hold a mapping of fields, not list"),
        ("generator: [\n", "is not valid YAML"),
    ],
)
def test_invalid_configs_fail_with_one_line_naming_the_field(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_config("nope.yaml")


def test_bad_override():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["training.epochs"])
    with pytest.raises(ConfigError, match="seed is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


@pytest.mark.parametrize("path", sorted(Path("configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    assert config.run_name and config.output


def _config_leaves(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every settable field, as `section.sub.field`."""
    fields = set()
    for name, field in model.model_fields.items():
        section = next(
            (
                a
                for a in (get_args(field.annotation) or (field.annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        fields |= {prefix + name} if section is None else _config_leaves(section, f"{prefix}{name}.")
    return fields


def _documented_fields() -> set[str]:
    """The fields README's config reference names: `a.b` / `c` (a sibling of b), `a.{b,c}`, `a.*`."""
    text = (REPO / "README.md").read_text().split("## Config reference", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in text.splitlines():
        items = re.findall(r"`([^`]+)`", line.split(" | ")[0]) if line.startswith("| `") else []
        for i, item in enumerate(items):
            if i and "." not in item.split("{")[0]:
                item = f"{items[0].rsplit('.', 1)[0]}.{item}"
            group = re.fullmatch(r"(.*)\.\{(.*)\}", item)
            names |= {f"{group[1]}.{name}" for name in group[2].split(",")} if group else {item}
    return names


def test_readme_config_reference_names_every_field_and_no_other():
    fields, documented = _config_leaves(RunConfig), _documented_fields()
    wildcards = tuple(name[:-1] for name in documented if name.endswith(".*"))
    assert sorted(f for f in fields if f not in documented and not f.startswith(wildcards)) == []
    assert sorted(d for d in documented if d not in fields and not d.endswith(".*")) == []
