"""Label spaces: the ordered class names a run synthesizes for, built-in or from a user file.

A class id is the position of its name in the label space; ids are what shards, scores and heads store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from synthvision.core.builtin_label_spaces import BUILTINS, DEFAULT_FILTER_TEMPLATE, DEFAULT_TEMPLATE
from synthvision.core.errors import DataError

BUILTIN_LABEL_SPACES = tuple(BUILTINS)


@dataclass(frozen=True)
class LabelSpace:
    name: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # A label space named like a built-in (a built-in, or a user's file with its stem) gets its templates.
    @property
    def default_template(self) -> str:
        """B's generation prompt."""
        return BUILTINS[self.name].prompt_template if self.name in BUILTINS else DEFAULT_TEMPLATE

    @property
    def zero_shot_templates(self) -> tuple[str, ...]:
        """The templates CLIP's zero-shot head averages."""
        return BUILTINS[self.name].zero_shot_templates if self.name in BUILTINS else (self.filter_template,)

    @property
    def filter_template(self) -> str:
        """CF's one prompt."""
        return BUILTINS[self.name].filter_template if self.name in BUILTINS else DEFAULT_FILTER_TEMPLATE


def label_space_name(spec: str) -> str:
    """A label space's name without reading it: a built-in's name, or a file's stem."""
    return spec if spec in BUILTIN_LABEL_SPACES else Path(spec).stem


def parse_class_names(text: str, source: str) -> tuple[str, ...]:
    """Class names from a file's text: a JSON list, or one name per line.

    In a text file, a line whose first non-blank character is `#` is a comment, and blank lines are
    layout: both are skipped (class ids count names, not lines). A blank JSON entry or a duplicate
    name is an error naming its line or entry, never something silently dropped.
    """
    stripped = text.strip()
    if stripped.startswith("[") or source.endswith(".json"):
        try:
            names = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise DataError(f"label space {source}: invalid JSON ({error.msg} at line {error.lineno})") from None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise DataError(f"label space {source}: the JSON must be a list of class names (strings)")
        entries = [(index + 1, name) for index, name in enumerate(names)]
    else:
        entries = [
            (number, line)
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.strip().startswith("#")
        ]
    if not entries:
        raise DataError(f"label space {source} is empty")
    seen: dict[str, int] = {}
    classes = []
    for number, raw in entries:
        name = " ".join(raw.split())
        if not name:
            raise DataError(f"label space {source}: entry {number} is blank")
        if name.lower() in seen:
            raise DataError(f"label space {source}: entry {number} {name!r} duplicates entry {seen[name.lower()]}")
        seen[name.lower()] = number
        classes.append(name)
    return tuple(classes)


def load_label_space(spec: str) -> LabelSpace:
    """A built-in label space by name, or a user file (`.txt` one class per line, or `.json` list)."""
    if spec in BUILTIN_LABEL_SPACES:
        file = f"{BUILTINS[spec].classes_file}.txt"
        text = resources.files("synthvision.data.label_spaces").joinpath(file).read_text("utf-8")
        return LabelSpace(spec, parse_class_names(text, spec))
    path = Path(spec)
    if not path.is_file():
        raise DataError(
            f"label_space {spec!r} is neither a built-in ({', '.join(BUILTIN_LABEL_SPACES)}) nor an existing file"
        )
    return LabelSpace(label_space_name(spec), parse_class_names(path.read_text("utf-8"), str(path)))
