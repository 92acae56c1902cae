"""The base of every config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # Unknown keys are errors: a typo such as `guidence_scale` must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")
