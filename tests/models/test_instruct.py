"""The llm prompt strategy's instruct model: a tiny causal LM saved to a folder and loaded as a real one
is, deterministic for a seed, and the prompts stage's per-class fallback like LE's."""

from __future__ import annotations

import pytest

from synthvision.core.data_config import LLMConfig
from synthvision.core.errors import ModelLoadError
from synthvision.core.prompts import first_line
from synthvision.models.instruct import (
    build_tiny_instruct_model,
    instruction,
    load_instruct_model,
    sample_llm_sentences,
)
from synthvision.run import Run
from synthvision.stages import prompts


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llm")
    model, tokenizer = build_tiny_instruct_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_causal_lm_from_a_folder_writes_the_same_sentences_for_the_same_seed(saved_model):
    config = LLMConfig(model=str(saved_model), max_new_tokens=12, batch_size=3)
    model, tokenizer = load_instruct_model(config)
    assert tokenizer.padding_side == "left" and tokenizer.chat_template is not None
    first = sample_llm_sentences(model, tokenizer, "sneaker", 5, config, seed=7)
    assert len(first) == 5 and all(isinstance(sentence, str) for sentence in first)
    assert sample_llm_sentences(model, tokenizer, "sneaker", 5, config, seed=7) == first
    assert sample_llm_sentences(model, tokenizer, "sneaker", 5, config, seed=8) != first


def test_the_instruction_and_its_settings_cycle_over_a_class_s_sentences():
    config = LLMConfig(instruction="Describe a photo of a {}.", contexts=["on a beach", "at night"])
    assert [instruction(config, "dog", i) for i in range(3)] == [
        "Describe a photo of a dog. Setting: on a beach.",
        "Describe a photo of a dog. Setting: at night.",
        "Describe a photo of a dog. Setting: on a beach.",
    ]
    with pytest.raises(ValueError, match="exactly one"):
        LLMConfig(instruction="no placeholder")


def test_a_reply_becomes_its_first_line_without_quotes_or_list_marks():
    assert first_line('\n  "A red dress on a hanger."\nSure, here is another:') == "A red dress on a hanger."
    assert first_line("1. A sneaker on grass") == "A sneaker on grass"
    assert first_line("   \n") == ""


def test_a_folder_that_is_not_a_model_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match=r"^prompts.llm.model: could not load"):
        load_instruct_model(LLMConfig(model=str(tmp_path)))


def test_the_llm_strategy_is_deterministic_and_falls_back_per_class_like_le(make_config, saved_model):
    llm = {"model": str(saved_model), "max_new_tokens": 8, "batch_size": 4}
    config = make_config(
        prompts={"strategy": "llm", "sentences_per_class": 3, "oversample": 1, "template": "{}", "llm": llm}
    )
    table = prompts.expand(Run(config))
    assert [p.source for p in table] and {p.source for p in table} <= {"llm", "basic_fallback"}
    assert [p.text for p in prompts.expand(Run(config))] == [p.text for p in table]  # the same seed
    assert all(sum(p.class_id == c for p in table) in (1, 2, 3) for c in range(3))
    # the tiny model writes gibberish that never names the class: every class falls back to its B prompt
    strict = make_config(prompts={"strategy": "llm", "sentences_per_class": 3, "require_class_name": True, "llm": llm})
    fallback = prompts.expand(Run(strict))
    assert [(p.source, p.text) for p in fallback] == [
        ("basic_fallback", f"a photo of a {name}") for name in Run(strict).label_space.classes
    ]
