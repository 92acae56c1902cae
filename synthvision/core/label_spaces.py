"""Label spaces: the ordered class names a run synthesizes for, built-in or from a user file.

A class id is the position of its name in the label space; ids are what shards, scores and heads store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from synthvision.core.errors import DataError

BUILTIN_LABEL_SPACES = ("cifar10", "cifar100", "eurosat", "fashion-mnist")

# Prompt templates per label space (strategy B); the paper's generic one otherwise.
DEFAULT_TEMPLATE = "a photo of a {}"
TEMPLATES = {"eurosat": "a centered satellite photo of {}"}

# CLIP's zero-shot head (CT's init, the zero-shot baseline, SCE's teacher) averages these, as the paper's
# code does: CLIP's 18 CIFAR templates for CIFAR-10 and CIFAR-100, one for EuroSAT.
CIFAR_TEMPLATES = tuple(
    f"a {quality}photo of {article} {size}{{}}."
    for article in ("a", "the")
    for quality, size in [
        ("", ""),
        ("blurry ", ""),
        ("black and white ", ""),
        ("low contrast ", ""),
        ("high contrast ", ""),
        ("bad ", ""),
        ("good ", ""),
        ("", "small "),
        ("", "big "),
    ]
)
ZERO_SHOT_TEMPLATES = {
    "cifar10": CIFAR_TEMPLATES,
    "cifar100": CIFAR_TEMPLATES,
    "eurosat": ("a centered satellite photo of {}.",),
}
# The CLIP filter scores with one prompt per dataset, with a trailing period (the paper's CF script).
DEFAULT_FILTER_TEMPLATE = "a photo of a {}."
FILTER_TEMPLATES = {"eurosat": "a centered satellite photo of {}."}


@dataclass(frozen=True)
class LabelSpace:
    name: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def default_template(self) -> str:
        return TEMPLATES.get(self.name, DEFAULT_TEMPLATE)

    @property
    def zero_shot_templates(self) -> tuple[str, ...]:
        return ZERO_SHOT_TEMPLATES.get(self.name, (self.filter_template,))

    @property
    def filter_template(self) -> str:
        return FILTER_TEMPLATES.get(self.name, DEFAULT_FILTER_TEMPLATE)


def label_space_name(spec: str) -> str:
    """A label space's name without reading it: a built-in's name, or a file's stem."""
    return spec if spec in BUILTIN_LABEL_SPACES else Path(spec).stem


def parse_class_names(text: str, source: str) -> tuple[str, ...]:
    """Class names from a file's text: a JSON list, or one name per line.

    Blank, empty or duplicate names are errors naming the line, not something silently dropped:
    a shifted line would shift every class id after it.
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
        entries = [(number, line) for number, line in enumerate(text.splitlines(), start=1)]
        # Trailing blank lines are layout, not entries.
        while entries and not entries[-1][1].strip():
            entries.pop()
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
        text = resources.files("synthvision.data.label_spaces").joinpath(f"{spec}.txt").read_text("utf-8")
        return LabelSpace(spec, parse_class_names(text, spec))
    path = Path(spec)
    if not path.is_file():
        raise DataError(
            f"label_space {spec!r} is neither a built-in ({', '.join(BUILTIN_LABEL_SPACES)}) nor an existing file"
        )
    return LabelSpace(label_space_name(spec), parse_class_names(path.read_text("utf-8"), str(path)))
