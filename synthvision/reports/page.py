"""What a stage shows when it ends: the summary its flow returns and its command prints, and the
artifacts on the run page. Each stage file says it (`page(run, outcome, done_now)`); the flows publish
it as it says, so a new stage's flow, command and artifacts need no code outside its file.

The library never imports Prefect: a `PageItem` names what to show, `flows/stages.py` shows it.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from synthvision.core.stage_table import stage
from synthvision.storage.store import Storage


@dataclass(frozen=True)
class PageItem:
    """One artifact of the run page: markdown or a table (exactly one), under the key suffix `key`
    (`train`, `train-report`, `contact-sheet`), described as `what`. `live`: one artifact updated in
    place each time it is shown (a contact sheet refreshed while its stage runs)."""

    key: str
    what: str
    markdown: str | None = None
    table: list[dict[str, Any]] | None = None
    live: bool = False

    def __post_init__(self) -> None:
        if (self.markdown is None) == (self.table is None):
            raise ValueError(f"page item {self.key!r}: give markdown or a table, not both or neither")


@dataclass(frozen=True)
class Page:
    """`summary`: what the stage's flow returns (a dataclass; its command prints its `line()` where it
    has one, else its fields); `items`: the artifacts."""

    summary: Any
    items: list[PageItem] = field(default_factory=list)


def inline_images(markdown: str, storage: Storage, folder: str) -> str:
    """`![alt](plot.png)` links to files of a report's folder ("": the root) as data URIs of those files: the Prefect
    UI shows an artifact's markdown but cannot serve the files beside it."""

    def embedded(match: re.Match) -> str:
        data = base64.b64encode(storage.read_bytes(f"{folder}/{match[2]}" if folder else match[2])).decode("ascii")
        return f"![{match[1]}](data:image/png;base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)", embedded, markdown)


def report_items(storage: Storage, name: str, rows: list[dict], what: str) -> list[PageItem]:
    """Stage `name`'s committed report as two artifacts: its `report.md` (`<name>-report`, the plots of
    its folder embedded) and its table (`<name>`, described as `what`)."""
    folder = stage(name).folder
    markdown = storage.read_bytes(f"{folder}/report.md").decode("utf-8")
    return [
        PageItem(f"{name}-report", f"{name} report", markdown=inline_images(markdown, storage, folder)),
        PageItem(name, what, table=rows),
    ]
