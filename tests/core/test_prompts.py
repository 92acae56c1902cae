from synthvision.core.label_spaces import LabelSpace
from synthvision.core.prompts import basic_prompts, language_enhanced_prompts, mentions_class, select_sentences


def test_mentions_class_whole_words_and_plurals():
    assert mentions_class("A white airplane over a beach", "airplane")
    assert mentions_class("two airplanes on a runway", "airplane")
    assert mentions_class("a Maple  Tree in autumn", "maple tree")
    assert not mentions_class("a catalog of shoes", "cat")
    assert not mentions_class("a tree by a maple", "maple tree")


def test_select_sentences_dedupes_filters_and_limits():
    sentences = [
        "The cat sleeps.",
        "the  cat sleeps.",
        "A dog runs.",
        "",
        "A cat and a dog.",
        "Cats everywhere",
        "cat 4",
    ]
    assert select_sentences("cat", sentences, limit=10) == [
        "The cat sleeps.",
        "A cat and a dog.",
        "Cats everywhere",
        "cat 4",
    ]
    assert select_sentences("cat", sentences, limit=2) == ["The cat sleeps.", "A cat and a dog."]


def test_basic_prompts_use_the_template():
    space = LabelSpace("eurosat", ("forest", "river"))
    prompts = basic_prompts(space, space.default_template)
    assert [p.text for p in prompts] == ["a centered satellite photo of forest", "a centered satellite photo of river"]
    assert [(p.prompt_id, p.class_id, p.source) for p in prompts] == [(0, 0, "basic"), (1, 1, "basic")]


def test_language_enhancement_wraps_sentences_and_falls_back_per_class():
    space = LabelSpace("x", ("cat", "dog"))
    sentences = {0: ["a cat on a mat", "a cat on a mat", "a bird"], 1: ["a bird", "nothing"]}
    prompts = language_enhanced_prompts(space, "a photo of a {}", sentences, limit=5)
    assert [(p.prompt_id, p.class_id, p.text, p.source) for p in prompts] == [
        (0, 0, "a photo of a a cat on a mat", "language_enhancement"),
        (1, 1, "a photo of a dog", "basic_fallback"),
    ]
