"""The prompts stage: the prompt table committed under its hash, read back, and what it shows."""

from __future__ import annotations

from synthvision.reports.page import PageItem
from synthvision.run import Run
from synthvision.stages import prompts
from synthvision.stages.prompts import PromptsOutcome
from synthvision.stages.units import ensure


def test_b_prompts_are_committed_read_back_and_shown_by_source(make_config):
    run = Run(make_config(prompts={"template": "a photo of a {}, in colour"}))
    table, done_now = ensure(run, "prompts")
    assert done_now
    assert [(p.class_id, p.text, p.source) for p in table] == [
        (0, "a photo of a red, in colour", "basic"),
        (1, "a photo of a green, in colour", "basic"),
        (2, "a photo of a blue, in colour", "basic"),
    ]
    assert prompts.committed(run) == table and ensure(run, "prompts") == (table, False)  # read back, not redone

    page = prompts.page(run, table, done_now)
    assert page.summary == PromptsOutcome(prompts=3, done_now=True, by_source={"basic": 3})
    assert page.items == [PageItem("prompts", "prompts by source (basic)", table=[{"source": "basic", "prompts": 3}])]

    # another template is another config: its table is not committed, whatever the file holds
    other = Run(make_config(prompts={"template": "{}"}))
    assert other.hashes["prompts"] != run.hashes["prompts"] and prompts.committed(other) is None
