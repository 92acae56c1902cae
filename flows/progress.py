"""What a person watching a shard stage sees while it runs: one progress line in the terminal, the same
line on the stage's progress artifact in the Prefect UI, and (for generate) a contact sheet of the
latest images, each refreshed every few seconds.

The rate counts only images computed in this flow run: shards committed by an earlier run are
skipped in milliseconds and would make the rate, and so the ETA, a lie after a resume.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import get_run_logger
from prefect.artifacts import update_progress_artifact
from tqdm import tqdm

from flows.run_page import page_update
from synthvision.core.manifest import Manifest
from synthvision.storage.commits import ShardOutcome

BLANK = "—"  # a cell with nothing to say (the UI renders a cell as markdown: "-" would be a bullet)
REFRESH_S = 2.0  # the UI's progress artifact and the terminal line, at most this often
LOG_EVERY_S = 30.0  # a progress line in the run's logs (what a UI or a non-terminal shows), this often


def duration(seconds: float | None) -> str:
    """`4h 02m`, `8m 05s`, `12s`: a duration a person reads at a glance."""
    if seconds is None:
        return BLANK
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def clock(timestamp: float | None) -> str:
    """An epoch time as `2026-11-24 08:15:02.125` (UTC; sorts as it reads), or BLANK."""
    if timestamp is None:
        return BLANK
    return datetime.fromtimestamp(timestamp, UTC).isoformat(sep=" ", timespec="milliseconds")[:23]


@dataclass
class StageProgress:
    """Counts of one shard stage in one flow run, and the line that shows them."""

    stage: str
    shards_planned: int
    images_planned: int
    started: float = field(default_factory=time.monotonic)
    shards_done: int = 0  # committed, now or by an earlier run
    images_done: int = 0
    images_now: int = 0  # computed in this flow run: the rate's numerator
    failed: int = 0
    not_started: int = 0  # shards a wave did not start (the output filled up)
    quarantined: int = 0
    recent: deque[Manifest] = field(default_factory=lambda: deque(maxlen=4))  # latest shards computed now

    def add(self, outcome: ShardOutcome) -> None:
        if outcome.manifest is None:
            self.quarantined += 1
            return
        self.shards_done += 1
        self.images_done += outcome.manifest.count
        if outcome.done_now:
            self.images_now += outcome.manifest.count
            self.recent.append(outcome.manifest)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float | None:
        """Images per second computed in this flow run (None before the first computed shard)."""
        return self.images_now / self.elapsed if self.images_now else None

    @property
    def eta(self) -> float | None:
        remaining = max(self.images_planned - self.images_done, 0)
        if remaining == 0:
            return 0.0
        return remaining / self.rate if self.rate else None

    @property
    def percent(self) -> float:
        return 100.0 * self.shards_done / self.shards_planned if self.shards_planned else 100.0

    def line(self) -> str:
        """`generate: 412/1,000 shards, 41,200/100,000 images, 123.4 images/s, ETA 8m 02s, elapsed 5m 34s, 0 failed`"""
        rate = f"{BLANK} images/s" if self.rate is None else f"{self.rate:,.1f} images/s"
        parts = [
            f"{self.stage}: {self.shards_done:,}/{self.shards_planned:,} shards",
            f"{self.images_done:,}/{self.images_planned:,} images",
            rate,
            f"ETA {duration(self.eta)}",
            f"elapsed {duration(self.elapsed)}",
            f"{self.failed} failed",
        ]
        if self.not_started:
            parts.append(f"{self.not_started} not started")
        if self.quarantined:
            parts.append(f"{self.quarantined} quarantined")
        return ", ".join(parts)


@contextmanager
def _logs_above(bar: tqdm) -> Iterator[None]:
    """Print log records above the progress line, not through it: the root logger's console handlers
    clear the line, write the record, and draw the line again."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and not bar.disable]
    originals = {handler: handler.emit for handler in handlers}

    def above(emit: Callable[[logging.LogRecord], None]) -> Callable[[logging.LogRecord], None]:
        def emit_above(record: logging.LogRecord) -> None:
            with bar.get_lock():
                bar.clear()
                emit(record)
                bar.refresh()

        return emit_above

    for handler, emit in originals.items():
        handler.emit = above(emit)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for handler, emit in originals.items():
            handler.emit = emit  # type: ignore[method-assign]


class ProgressReporter:
    """Shows a `StageProgress` in the terminal (one line, when stderr is a terminal), on the progress
    artifact and in the logs, and calls `on_refresh` (the contact sheet) at most every `every_s`."""

    def __init__(
        self,
        progress: StageProgress,
        artifact_id: str | None,  # None: the progress artifact could not be created
        note: str = "",
        on_refresh: Callable[[], None] | None = None,
        every_s: float = REFRESH_S,
    ):
        self.progress = progress
        self.artifact_id = artifact_id
        self.note = note  # after the line on the artifact (the config hash of the outputs it counts)
        self.on_refresh = on_refresh
        self.every_s = every_s
        self._shown = self._logged = time.monotonic()
        self._bar = tqdm(total=progress.shards_planned, bar_format="{desc}", disable=None, leave=True)
        self._logs = _logs_above(self._bar)

    def __enter__(self) -> ProgressReporter:
        self._logs.__enter__()
        self.show(force=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.show(force=True)
        get_run_logger().info(self.progress.line())
        self._logs.__exit__(*exc_info)
        self._bar.close()

    def add(self, outcome: ShardOutcome) -> None:
        self.progress.add(outcome)
        self.show()

    def fail(self) -> None:
        self.progress.failed += 1
        self.show()

    def not_started(self, shards: int) -> None:
        self.progress.not_started += shards
        self.show(force=True)

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < self.every_s:
            return
        self._shown = now
        line = self.progress.line()
        self._bar.set_description_str(line)
        if self.artifact_id is not None:
            with page_update("progress"):
                update_progress_artifact(
                    self.artifact_id, self.progress.percent, description=f"{line} {self.note}".strip()
                )
        if self.on_refresh is not None:
            self.on_refresh()
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            get_run_logger().info(line)
