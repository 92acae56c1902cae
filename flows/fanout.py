"""Fan a shard task out over every shard of the plan, at any scale, with progress reporting.

A stage runs its shards in waves: each wave is a sub-flow (`<run>-<stage>-wave-0003`) of at most
`orchestration.shards_per_flow_run` task runs, since Prefect's server slows down past a few thousand
task runs in one flow run. Inside a wave at most `orchestration.max_in_flight` shard futures are
outstanding, and only a small summary row is kept per shard, so the flow's memory stays flat for a
million-image plan. Each shard is one task run named `<stage>-shard-00042`. As shards complete, the
stage's progress line (terminal, progress artifact, logs: `flows/progress.py`), the wave's table of
its shards (every shard at its end, even when the wave fails) and what the stage file's `live` shows
of the latest shards (generate: a contact sheet) refresh, all on the run page a user opens
(`flows/run_page.py`); each wave leaves an index of the manifests it committed, from which `status`
reads progress in seconds.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from prefect import flow
from prefect.artifacts import MarkdownArtifact, ProgressArtifact, TableArtifact
from prefect.futures import PrefectFuture, as_completed

from flows.engines import ensure_gpu_limit, shard_task_runner
from flows.progress import BLANK, ProgressReporter, StageProgress, clock
from flows.run_page import publish, show
from synthvision.core.config import RunConfig
from synthvision.core.errors import StorageFull, SynthvisionError
from synthvision.core.planning import shard_name
from synthvision.reports.page import Page
from synthvision.run import Run, open_run
from synthvision.storage.commits import ShardOutcome
from synthvision.storage.store import STORAGE_STATS, Storage
from tasks.policy import retry_options
from tasks.stages import UNIT_TASKS

LIVE_PAGE_EVERY_S = 20.0  # how often a running stage's live items (generate's contact sheet) refresh
TABLE_EVERY_S = 5.0  # how often a running wave's per-shard table refreshes


def artifact_key(run: Run, suffix: str) -> str:
    """`<run name>-<output id>-<suffix>` (see `output_key`)."""
    return output_key(run.config.run_name, run.storage, suffix)


def output_key(name: str, storage: Storage, suffix: str) -> str:
    """`<name>-<output id>-<suffix>`: unique per output (two outputs of one name keep their own
    artifacts), in the lowercase letters, digits and dashes that artifact keys allow."""
    output_id = hashlib.sha256(storage.canonical_url.encode()).hexdigest()[:6]
    return re.sub(r"[^a-z0-9-]+", "-", f"{name}-{output_id}-{suffix}".lower()).strip("-")


def describe(run: Run, stage: str, what: str) -> str:
    """Artifact description: what it shows, and the stage config hash of the outputs it describes."""
    return f"{run.config.run_name}: {what} (config hash {run.hashes[stage]})"


def bounded_futures(
    submit: Callable[[Any], PrefectFuture], items: Iterable[Any], limit: int, halted: Callable[[], bool] = lambda: False
) -> Iterator[tuple[Any, PrefectFuture]]:
    """`(item, future)` of `submit(item)` for every item, as they complete, with at most `limit` outstanding.
    Once `halted()`, nothing more is submitted, and futures still queued on this process's pool are
    cancelled (their items are not yielded)."""
    items = iter(items)
    pending = {submit(item): item for item in itertools.islice(items, limit)}
    while pending:
        if halted():
            for future in [future for future in pending if _cancel_queued(future)]:
                del pending[future]
            if not pending:
                return
        done = next(as_completed(pending))
        yield pending.pop(done), done
        if not halted():
            pending.update((submit(item), item) for item in itertools.islice(items, 1))


def _cancel_queued(future: PrefectFuture) -> bool:
    """Cancel a future that a thread or process pool has not started; whether it was."""
    wrapped = getattr(future, "wrapped_future", None)
    return isinstance(wrapped, concurrent.futures.Future) and wrapped.cancel()


def _one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one line of at most `limit` characters, for a table cell."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


SHARD_COLUMNS = (
    "shard", "state", "samples", "bytes", "attempts", "dropped", "seconds", "device", "slot_start", "slot_end", "reason"
)  # fmt: skip


def _summary_row(outcome: ShardOutcome) -> dict[str, Any]:
    """A shard's row in its wave's table artifact: every column filled, times readable, and a reason
    for a quarantined shard (its input was corrupt) or a failed one."""
    manifest = outcome.manifest
    if manifest is None:
        state = "quarantined"
    else:
        state = "done now" if outcome.done_now else "committed before"
    seconds = None if manifest is None else manifest.timings.get("total_s")
    return {
        "shard": outcome.shard,
        "state": state,
        "samples": 0 if manifest is None else manifest.count,
        "bytes": 0 if manifest is None else manifest.bytes,
        "attempts": outcome.attempts,
        "dropped": BLANK
        if manifest is None
        else ", ".join(f"{k}: {n}" for k, n in sorted(manifest.dropped.items())) or BLANK,
        "seconds": BLANK if seconds is None else f"{seconds:.2f}",
        # where and when the shard held its GPU slot (blank for shards committed before)
        "device": BLANK if outcome.device == "-" else outcome.device,
        "slot_start": clock(outcome.slot_start),
        "slot_end": clock(outcome.slot_end),
        "reason": outcome.quarantined or BLANK,
    }


def _failed_row(shard: str, error: BaseException) -> dict[str, Any]:
    return {column: BLANK for column in SHARD_COLUMNS} | {"shard": shard, "state": "failed", "reason": _one_line(error)}


def _not_started_row(shard: str, full: list[StorageFull]) -> dict[str, Any]:
    why = "the output is full" if full else "the wave was stopped"
    return {column: BLANK for column in SHARD_COLUMNS} | {"shard": shard, "state": "not started", "reason": why}


@dataclass
class StageSummary:
    """What a shard stage did in one flow run."""

    stage: str
    shards: int
    gpu_slots: int  # slots of the global concurrency limit its shards hold
    waves: int = 0
    done_now: int = 0  # shards computed in this flow run (the rest were committed before)
    samples: int = 0
    task_retries: int = 0
    quarantined: list[str] = field(default_factory=list)  # corrupt input shards moved aside
    quarantine_reasons: dict[str, str] = field(default_factory=dict)  # shard -> why
    storage_requests: dict[str, int] | None = None  # object-store requests of this process

    def add(self, outcomes: list[ShardOutcome]) -> None:
        self.waves += 1
        self.done_now += sum(o.done_now for o in outcomes)
        self.samples += sum(o.manifest.count for o in outcomes if o.manifest is not None)
        self.task_retries += sum(o.attempts - 1 for o in outcomes if o.done_now)
        self.quarantined += [o.shard for o in outcomes if o.quarantined]
        self.quarantine_reasons |= {o.shard: o.quarantined for o in outcomes if o.quarantined}


_REPORTERS: dict[str, ProgressReporter] = {}  # progress artifact id -> its stage's reporter (this process)


def reporter_of(progress_id: str) -> ProgressReporter:
    """The stage's reporter. (A function, not the dict itself in the wave's body: process and Dask
    task runners pickle the wave flow's function by value, with the globals it names.)"""
    return _REPORTERS[progress_id]


@flow(name="shard-wave", flow_run_name="{config.run_name}-{stage}-wave-{wave:04d}")
def shard_wave(config: RunConfig, stage: str, wave: int, start: int, stop: int, progress_id: str) -> list[ShardOutcome]:
    """Shards `start..stop-1` of `stage`, one task run each; returns their outcomes.

    A failed shard (its retries spent) does not stop the others: the wave finishes, commits its
    index and table (the failed rows with their errors), then fails naming every failed shard (or
    with the first user error, which names its field, file or shard)."""
    options = retry_options(config.orchestration)
    task = UNIT_TASKS[stage]
    run = open_run(config)
    reporter = reporter_of(progress_id)

    def submit(index: int) -> PrefectFuture:
        return task.with_options(task_run_name=f"{stage}-{shard_name(index)}", **options).submit(config, index)

    outcomes: list[ShardOutcome] = []
    failed: dict[str, BaseException] = {}
    full: list[StorageFull] = []  # once the output is full, no further shard starts
    shown = [float("-inf")]

    def show_table(not_started: list[str] = (), force: bool = False) -> None:
        """The wave's per-shard table on the run page: its finished shards, refreshed at most every
        `TABLE_EVERY_S` while it runs, and every shard when it ends."""
        if not force and time.monotonic() - shown[0] < TABLE_EVERY_S:
            return
        shown[0] = time.monotonic()
        rows = (
            [_summary_row(outcome) for outcome in outcomes]
            + [_failed_row(s, e) for s, e in failed.items()]
            + [_not_started_row(s, full) for s in not_started]
        )
        show(
            TableArtifact,
            artifact_key(run, f"{stage}-shards-wave-{wave:04d}"),
            describe(run, stage, f"{stage} wave {wave} per shard"),
            table=sorted(rows, key=lambda row: row["shard"]),
        )

    try:
        for index, future in bounded_futures(
            submit, range(start, stop), config.orchestration.max_in_flight, halted=lambda: bool(full)
        ):
            try:
                outcome = future.result()
            except Exception as error:  # the shard's retries are spent; the other shards go on
                failed[shard_name(index)] = error
                reporter.fail()
                if isinstance(error, StorageFull):
                    full.append(error)
                show_table()
                continue
            outcomes.append(outcome)
            reporter.add(outcome)
            show_table()
    finally:  # a wave stopped by an interrupt still shows what it did
        run.commits.index(stage, wave, [o.manifest for o in outcomes if o.manifest is not None])
        ended = {outcome.shard for outcome in outcomes} | set(failed)
        not_started = [shard_name(i) for i in range(start, stop) if shard_name(i) not in ended]
        if full:
            reporter.not_started(len(not_started))
        show_table(not_started, force=True)
    if failed:
        user_errors = [error for error in failed.values() if isinstance(error, SynthvisionError)]
        if user_errors:  # bad input or config: the first one's own line, as the CLI prints it
            raise user_errors[0]
        raise ShardsFailed(
            f"{stage}: {len(failed)} shard(s) failed: "
            + "; ".join(f"{shard}: {_one_line(error, 200)}" for shard, error in sorted(failed.items()))
        )
    return sorted(outcomes, key=lambda outcome: outcome.shard)


class ShardsFailed(RuntimeError):
    """Shards of a wave failed after their retries (the message names each one and its error)."""


def run_shard_tasks(run: Run, stage: str) -> StageSummary:
    """Run `stage`'s shard task over every shard, in waves, showing its progress; returns a summary."""
    config = run.config
    num_shards, per_wave = run.plan.num_shards, config.orchestration.shards_per_flow_run
    artifact = publish(
        ProgressArtifact,
        progress=0.0,
        key=artifact_key(run, f"{stage}-progress"),
        description=describe(run, stage, f"{stage}: starting"),
    )
    progress_id = str(artifact or uuid.uuid4())  # the stage's reporter, for its waves to find
    progress = StageProgress(stage, num_shards, run.plan.num_images)
    summary = StageSummary(stage, num_shards, ensure_gpu_limit(config))
    requests_before = STORAGE_STATS.snapshot()
    refresh = _live_page(run, stage, progress)
    note = f"(config hash {run.hashes[stage]})"
    reporter = ProgressReporter(progress, artifact and str(artifact), note, refresh)
    with reporter, shard_task_runner(config) as runner:
        _REPORTERS[progress_id] = reporter
        try:
            wave_flow = shard_wave.with_options(task_runner=runner)
            for wave, start in enumerate(range(0, num_shards, per_wave)):
                summary.add(wave_flow(config, stage, wave, start, min(start + per_wave, num_shards), progress_id))
        finally:
            del _REPORTERS[progress_id]
    if not run.storage.is_local:
        # this process's object-store requests (the threads engine's; worker processes count their own)
        summary.storage_requests = STORAGE_STATS.since(requests_before)
    return summary


def show_page(run: Run, stage: str, page: Page) -> None:
    """Publish a stage's page items on the run page (a live one updated in place)."""
    for item in page.items:
        key, description = artifact_key(run, item.key), describe(run, stage, item.what)
        if item.table is not None:
            publish(TableArtifact, table=item.table, key=key, description=description)
        elif item.live:
            show(MarkdownArtifact, key, description, markdown=item.markdown)
        else:
            publish(MarkdownArtifact, markdown=item.markdown, key=key, description=description)


def _live_page(run: Run, stage: str, progress: StageProgress, every_s: float = LIVE_PAGE_EVERY_S):
    """A callback that, at most every `every_s`, shows what the stage file's `live(run, manifests)`
    makes of the latest committed shards (generate: their contact sheet); None for a stage without one."""
    live = getattr(import_module(f"synthvision.stages.{stage}"), "live", None)
    if live is None:
        return None
    last = [time.monotonic()]

    def refresh() -> None:
        if time.monotonic() - last[0] < every_s or not progress.recent:
            return
        last[0] = time.monotonic()
        page = live(run, list(progress.recent))
        if page is not None:
            show_page(run, stage, page)

    return refresh
