"""Done, or do it: the one place that asks whether a unit of a run is committed.

A unit is a shard of a per-shard stage or a whole-run stage. Its stage file answers `committed(run[,
index])` from storage and computes it with its work function (the stage row's `work_function`), which
commits and never asks. Every caller (a Prefect task, a benchmark, a test) goes through `ensure`, so a
unit is asked once per attempt, and a model's place (`slot`) is taken only when there is work.

A shard's work holds that place only while its model runs (`model_turn`): a shard reads and prepares
its first batches before it takes the place and encodes, writes and commits its tail after it gave it
back, so with two shards in flight the model goes from one shard's last batch to the next one's first
without waiting for either's input or output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from contextvars import ContextVar
from importlib import import_module
from typing import TYPE_CHECKING, Any

from synthvision.core.stage_table import stage

if TYPE_CHECKING:
    from synthvision.run import Run


def ensure(
    run: Run, stage_name: str, *index: int, slot: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> tuple[Any, bool]:
    """The unit's committed outcome (a shard's manifest, the prompt table, a stage's report), or, holding
    `slot`, the work that commits it; and whether the work was done now. `index`: a shard's, for a
    per-shard stage."""
    row = stage(stage_name)
    if row.per_shard != bool(index):
        raise ValueError(f"stage {stage_name!r}: {'a shard index' if row.per_shard else 'no index'} expected")
    module = import_module(f"synthvision.stages.{stage_name}")  # looked up now: a patched function is the one used
    existing = module.committed(run, *index)
    if existing is not None:
        return existing, False
    with ModelTurn(slot) as turn:
        token = _turn.set(turn)
        try:
            if not row.per_shard:  # a whole-run stage holds the place for all of its work
                turn.take()
                run.commits.started[stage_name] = time.monotonic()  # the report records its seconds (`busy_s`)
            return getattr(module, row.work_function)(run, *index), True
        finally:
            _turn.reset(token)


class ModelTurn:
    """A unit's hold on the model's place: taken at its first model call (`take`; while held, again a
    no-op), given back after its last (`give_back`), and in any case when the unit's work ends."""

    def __init__(self, slot: Callable[[], AbstractContextManager[Any]] = nullcontext):
        self._slot, self._held = slot, ExitStack()
        self.taken = False

    def take(self) -> None:
        if not self.taken:
            self._held.enter_context(self._slot())
            self.taken = True

    def give_back(self) -> None:
        self._held.close()
        self.taken = False  # a later model call takes the place again, never runs without it

    def __enter__(self) -> ModelTurn:
        return self

    def __exit__(self, *_: object) -> None:
        self.give_back()


_turn: ContextVar[ModelTurn | None] = ContextVar("model_turn", default=None)


def model_turn() -> ModelTurn:
    """The turn of the unit this thread works on (outside `ensure`: one that holds nothing)."""
    return _turn.get() or ModelTurn()
