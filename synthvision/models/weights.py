"""Where model weights come from: a local folder, or a hub id resolved by the model library itself."""

from __future__ import annotations

from pathlib import Path

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
