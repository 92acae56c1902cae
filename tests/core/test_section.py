"""How a field enters the stage hashes, said where it is declared (synthvision/core/section.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel

from synthvision.core.config import RunConfig
from synthvision.core.section import Added, ByPart, Runtime, Section, hashed
from synthvision.core.stage_table import STAGES, stage_hashes


class Inner(Section):
    depth: int = 2
    device: Annotated[str, Runtime] = "auto"


class Toy(Section):
    kept: str = "a"
    device: Annotated[str, Runtime] = "auto"
    since: Annotated[float, Added(0.0)] = 0.0
    elsewhere: Annotated[int, ByPart("toy.elsewhere")] = 1
    inner: Inner = Inner()
    listed: list[Inner] = [Inner(depth=5)]


def test_hashed_leaves_out_runtime_fields_added_ones_at_their_value_and_those_a_part_hashes():
    assert hashed(Toy()) == {"kept": "a", "inner": {"depth": 2}, "listed": [{"depth": 5}]}
    changed = Toy(device="cuda:1", since=0.5, elsewhere=9, inner=Inner(device="cpu"))
    assert hashed(changed) == {"kept": "a", "since": 0.5, "inner": {"depth": 2}, "listed": [{"depth": 5}]}


def marked(model: type[BaseModel], prefix: str = "") -> dict[str, list[Any]]:
    """Every field of a config model by its dotted path, with its marks (sub-sections walked)."""
    found: dict[str, list[Any]] = {}
    for name, field in model.model_fields.items():
        found[prefix + name] = list(field.metadata)
        inner = field.annotation
        for candidate in getattr(inner, "__args__", (inner,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found |= marked(candidate, f"{prefix}{name}.")
    return found


EVERY_SECTION = {
    "output": "/tmp/unused",
    "fewshot": {"train_set": "pool.tar"},
    "quality": {},
    "pretrain": {},
    "transfer": {"label_space": "fashion-mnist", "train_set": "pool.tar", "test_set": "test.tar"},
    "scratch": {"real_train_set": "pool.tar", "real_per_class": [1]},
    "prompts": {"strategy": "language_enhancement"},
}


def _other(value: Any) -> Any:
    """A different valid value of a runtime field's kind (None: a worker count left to the default)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return 1 if value is None else "cpu"


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {**data, head: _set(data.get(head) or {}, rest, value) if rest else value}


def test_a_runtime_field_changes_no_stage_hash_and_every_part_a_field_names_exists():
    fields = marked(RunConfig)
    runtime = [path for path, marks in fields.items() if Runtime in marks]
    assert len(runtime) >= 20 and "generator.device" in runtime and "pretrain.workers" in runtime
    base = RunConfig.model_validate(EVERY_SECTION)
    before = stage_hashes(base)
    for path in runtime:
        value = base
        for part in path.split("."):
            value = getattr(value, part)
        changed = RunConfig.model_validate(_set(EVERY_SECTION, path, _other(value)))
        assert stage_hashes(changed) == before, path

    parts = {part.key for row in STAGES for part in row.parts}
    by_part = {mark.key for marks in fields.values() for mark in marks if isinstance(mark, ByPart)}
    assert by_part and by_part <= parts, by_part - parts
