"""What the run page a user opens shows. A user opens the top-level flow run (`demo`); its stages and
their waves are sub-flows below it. Every artifact synthvision publishes goes on that top-level run:
each stage's progress (rate, ETA, failures), each wave's per-shard table, the contact sheet, the
reports. One that changes while the run goes (a wave's table, the contact sheet) is created once and
updated in place after (`show`), so the page holds one of each, and a wave's rows appear as its
shards finish, not when the wave ends.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.artifacts import Artifact
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.runtime import flow_run

_roots: dict[str, UUID | None] = {}  # flow run id -> its top-level flow run's id
_shown: dict[tuple[UUID | None, str], UUID] = {}  # (top-level flow run, key) -> the artifact `show` keeps


def top_level_run() -> UUID | None:
    """The top-level flow run above the current one (itself at the top); None outside a flow run."""
    current = flow_run.id
    if current is None:
        return None
    if current not in _roots:  # Prefect asks the server, one parent at a time
        root = flow_run.root_flow_run_id
        _roots[current] = UUID(str(root)) if root else None
    return _roots[current]


def publish(kind: type[Artifact], **fields: Any) -> UUID:
    """Create an artifact (`kind(**fields)`, e.g. `TableArtifact(table=..., key=..., description=...)`)
    on the top-level flow run; returns its id."""
    return kind(**fields, flow_run_id=top_level_run()).create().id


def show(kind: type[Artifact], key: str, description: str, **content: Any) -> None:
    """Publish `kind(key=key, **content)` the first time this run shows `key`, and update that artifact
    in place after (its data and description)."""
    place = (top_level_run(), key)
    if place not in _shown:
        _shown[place] = publish(kind, key=key, description=description, **content)
        return
    data = kind(key=key, **content).format(_sync=True)
    with get_client(sync_client=True) as client:
        client.update_artifact(_shown[place], ArtifactUpdate(data=data, description=description))
