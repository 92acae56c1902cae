"""What the run page a user opens shows. A user opens the top-level flow run (`demo`); its stages and
their waves are sub-flows below it. Every artifact synthvision publishes goes on that top-level run:
each stage's progress (rate, ETA, failures), each wave's per-shard table, the contact sheet, the
reports. One that changes while the run goes (a wave's table, the contact sheet) is created once and
updated in place after (`show`), so the page holds one of each, and a wave's rows appear as its
shards finish, not when the wave ends. The page is not the work: an update the server does not answer
(it is restarting) is skipped with a warning, and the run goes on (`page_update`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client, get_run_logger
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


@contextmanager
def page_update(what: str) -> Iterator[None]:
    """An update of the run page: skipped, with a warning, when the Prefect server does not answer
    (restarting, overloaded), so that a page update never fails the work; the next one catches up."""
    try:
        yield
    except httpx.HTTPError as error:
        get_run_logger().warning(
            "the run page's %s was not updated (the Prefect server did not answer: %s: %s); the run goes on",
            what,
            type(error).__name__,
            " ".join(str(error).split())[:200],
        )


def publish(kind: type[Artifact], **fields: Any) -> UUID | None:
    """Create an artifact (`kind(**fields)`, e.g. `TableArtifact(table=..., key=..., description=...)`)
    on the top-level flow run; returns its id (None: the server did not answer, see `page_update`)."""
    with page_update(fields.get("key") or kind.__name__):
        return kind(**fields, flow_run_id=top_level_run()).create().id
    return None


def show(kind: type[Artifact], key: str, description: str, **content: Any) -> None:
    """Publish `kind(key=key, **content)` the first time this run shows `key`, and update that artifact
    in place after (its data and description)."""
    with page_update(key):
        place = (top_level_run(), key)
        if place not in _shown:
            created = publish(kind, key=key, description=description, **content)
            if created is not None:
                _shown[place] = created
            return
        data = kind(key=key, **content).format(_sync=True)
        with get_client(sync_client=True) as client:
            client.update_artifact(_shown[place], ArtifactUpdate(data=data, description=description))
