"""Prompt expansion strategies B (basic) and LE (language enhancement): the pure part.

B:  one prompt per class, `template.format(class_name)` ("a photo of a airplane").
LE: a seq2seq model writes sentences per class (see `models/sentences.py`); `select_sentences` dedupes
    them and keeps a seeded random `limit` of them, as the paper's code does (it samples 250, dedupes and
    keeps 200), optionally only those that name the class (`prompts.require_class_name`); the template
    wraps each sentence ("a photo of a {sentence}", paper A.7.1). A class left without sentences falls
    back to its B prompt, recorded with source `basic_fallback`, so no class ever ends up without images.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from synthvision.core.hashing import derive_seed
from synthvision.core.label_spaces import LabelSpace


@dataclass(frozen=True)
class Prompt:
    prompt_id: int
    class_id: int
    class_name: str
    text: str
    source: str  # "basic", "language_enhancement", "llm" or "basic_fallback"


def mentions_class(sentence: str, class_name: str) -> bool:
    """True when `class_name` occurs in `sentence` as whole words, case-insensitively.

    A plural 's'/'es' counts ("two airplanes" mentions "airplane"); a substring inside another word
    does not ("catalog" does not mention "cat").
    """
    words = r"\s+".join(re.escape(word) for word in class_name.lower().split())
    return re.search(rf"\b{words}(?:s|es)?\b", sentence.lower()) is not None


def select_sentences(
    class_name: str, sentences: Iterable[str], limit: int, require_class_name: bool = False, seed: int = 0
) -> list[str]:
    """Normalise whitespace, drop empties and case-insensitive duplicates (first one wins), optionally
    keep only the sentences that mention the class, then `limit` of them drawn at random (seeded by
    `seed` and the class), in the order the model wrote them."""
    kept: list[str] = []
    seen: set[str] = set()
    for sentence in sentences:
        text = " ".join(sentence.split()).strip()
        if not text or text.lower() in seen:
            continue
        seen.add(text.lower())
        if not require_class_name or mentions_class(text, class_name):
            kept.append(text)
    if len(kept) <= limit:
        return kept
    chosen = random.Random(derive_seed(seed, "sentences.kept", class_name)).sample(range(len(kept)), limit)
    return [kept[index] for index in sorted(chosen)]


def basic_prompts(label_space: LabelSpace, template: str) -> list[Prompt]:
    return [
        Prompt(class_id, class_id, name, template.format(name), "basic")
        for class_id, name in enumerate(label_space.classes)
    ]


def language_enhanced_prompts(
    label_space: LabelSpace,
    template: str,
    sentences_by_class: Mapping[int, list[str]],
    limit: int,
    require_class_name: bool = False,
    seed: int = 0,
    source: str = "language_enhancement",
) -> list[Prompt]:
    """LE (or llm: `source`) prompts from raw model sentences per class id, with the B prompt as a
    per-class fallback."""
    prompts: list[Prompt] = []
    for class_id, name in enumerate(label_space.classes):
        kept = select_sentences(name, sentences_by_class.get(class_id, []), limit, require_class_name, seed)
        texts = [(template.format(sentence), source) for sentence in kept]
        for text, source in texts or [(template.format(name), "basic_fallback")]:
            prompts.append(Prompt(len(prompts), class_id, name, text, source))
    return prompts


def first_line(reply: str) -> str:
    """An instruct model's reply as one prompt: its first non-empty line, without the quotes or a
    leading list mark that chat models like to add."""
    for line in reply.splitlines():
        line = line.strip().lstrip("-*0123456789. ").strip().strip("\"'“”").strip()
        if line:
            return line
    return ""
