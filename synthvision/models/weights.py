"""Where model weights come from: a local folder, or a hub id resolved by the model library itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthvision.core.errors import ModelLoadError


def resolve_model_source(model: str, field: str) -> str:
    """A local folder (absolute, relative or ~) if one exists, else the string as a hub id.

    Something written as a path (`./x`, `/x`, `~/x`) that does not exist is an error, not a hub id.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if model.startswith((".", "/", "~")):
        raise ModelLoadError(f"{field}: local folder {model!r} does not exist")
    return model


def from_pretrained(field: str, model: str, load: Callable[[str], Any], note: str = "") -> Any:
    """`load(source)` for a transformers model named by `field` (see `resolve_model_source`); a model
    that cannot be loaded is one line naming the field, not a traceback."""
    source = resolve_model_source(model, field)
    try:
        return load(source)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"{field}: could not load {model!r}{note} ({str(error).splitlines()[0]}). "
            "Offline, download it elsewhere and set the field to its local folder."
        ) from None
