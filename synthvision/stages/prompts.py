"""The prompts stage: class names into prompts, strategy B (one template), LE (a seq2seq model writes
sentences per class) or llm (an instruct model writes them from an instruction), committed as
`prompts.parquet`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tqdm import tqdm

from synthvision.core import failpoints
from synthvision.core.data_config import PromptsConfig
from synthvision.core.prompts import Prompt, basic_prompts, language_enhanced_prompts
from synthvision.reports.page import Page, PageItem
from synthvision.storage.prompt_table import write_prompts

if TYPE_CHECKING:
    from synthvision.run import Run


@dataclass(frozen=True)
class PromptsOutcome:
    prompts: int
    done_now: bool
    by_source: dict[str, int] = field(default_factory=dict)  # basic, language_enhancement, llm, basic_fallback

    @classmethod
    def of(cls, prompts: list[Prompt], done_now: bool) -> PromptsOutcome:
        return cls(len(prompts), done_now, dict(sorted(Counter(p.source for p in prompts).items())))


def committed(run: Run) -> list[Prompt] | None:
    return run.commits.prompts()


def page(run: Run, prompts: list[Prompt], done_now: bool) -> Page:
    summary = PromptsOutcome.of(prompts, done_now)
    table = [{"source": source, "prompts": count} for source, count in summary.by_source.items()]
    return Page(summary, [PageItem("prompts", f"prompts by source ({run.config.prompts.strategy})", table=table)])


def expand(run: Run) -> list[Prompt]:
    """Expand every class into prompts and commit the table; returns the prompts."""
    config, label_space = run.config, run.label_space
    template = config.prompts.template or label_space.default_template
    if config.prompts.strategy == "basic":
        # B: the template with the class name
        prompts = basic_prompts(label_space, template)
    else:
        # LE / llm: 1. the model; 2. its sentences per class (seeded), more than are kept; 3. deduped, a
        # seeded `sentences_per_class` of them kept per class (the template where none is left)
        write, count = _sentence_writer(config.prompts), config.prompts.sentences_per_class + config.prompts.oversample
        sentences = {}
        desc = "language enhancement" if config.prompts.strategy == "language_enhancement" else "llm prompts"
        for class_id, name in enumerate(tqdm(label_space.classes, desc=desc, unit="class")):
            sentences[class_id] = write(name, count, config.seed)
            failpoints.reach("prompts.class")
        prompts = language_enhanced_prompts(
            label_space,
            template,
            sentences,
            config.prompts.sentences_per_class,
            config.prompts.require_class_name,
            config.seed,
            source=config.prompts.strategy,
        )
    write_prompts(run.storage, prompts, run.hashes["prompts"])
    return prompts


def _sentence_writer(config: PromptsConfig) -> Callable[[str, int, int], list[str]]:
    """(class name, count, seed) -> sentences, from LE's seq2seq model or llm's instruct model."""
    if config.strategy == "llm":
        from synthvision.models.instruct import load_instruct_model, sample_llm_sentences

        model, tokenizer = load_instruct_model(config.llm)
        return lambda name, count, seed: sample_llm_sentences(model, tokenizer, name, count, config.llm, seed)
    from synthvision.models.sentences import load_sentence_model, sample_sentences

    model, tokenizer = load_sentence_model(config.sentence_model)
    return lambda name, count, seed: sample_sentences(model, tokenizer, name, count, config.sentence_model, seed)
