"""The base of every config section, and how each field enters the stage hashes, said where the
field is declared.

A field changes its stage's outputs, and enters that stage's hash (`core/stage_table.py`), unless
its declaration says otherwise with one of these marks:

- `Runtime`: it changes how fast work runs, never what it writes (a device, a batch size that does
  not seed anything, worker counts): in no hash.
- `Added(value)`: it came after outputs were written without it, and `value` is what those outputs
  did; at that value it has no hash entry, so they stay valid.
- `ByPart(key)`: whether it changes outputs depends on other fields; the stage table's part `key`
  hashes it (`generator.image_encoding`: png's level only for png).

So a new field is hashed unless its own declaration marks it, and `hashed(section)` is the one reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # Unknown keys are errors: a typo such as `guidence_scale` must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class _Runtime:
    def __repr__(self) -> str:
        return "Runtime"


Runtime = _Runtime()


@dataclass(frozen=True)
class Added:
    value: Any


@dataclass(frozen=True)
class ByPart:
    key: str


def hashed(section: BaseModel) -> dict[str, Any]:
    """The section as its stage hash sees it: its fields less `Runtime` and `ByPart` ones and those at
    their `Added` value, sub-sections likewise."""
    view: dict[str, Any] = {}
    for name, field in type(section).model_fields.items():
        marks = field.metadata
        if Runtime in marks or any(isinstance(mark, ByPart) for mark in marks):
            continue
        value = getattr(section, name)
        if any(isinstance(mark, Added) and mark.value == value for mark in marks):
            continue
        view[name] = hashed(value) if isinstance(value, BaseModel) else _plain(value)
    return view


def _plain(value: Any) -> Any:
    """A value as `model_dump` gives it, a section inside a list or dict as `hashed` sees it."""
    if isinstance(value, BaseModel):
        return hashed(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
