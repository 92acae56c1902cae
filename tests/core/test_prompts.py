from synthvision.core.label_spaces import LabelSpace
from synthvision.core.prompts import basic_prompts, language_enhanced_prompts, mentions_class, select_sentences


def test_mentions_class_whole_words_and_plurals():
    assert mentions_class("A white airplane over a beach", "airplane")
    assert mentions_class("two airplanes on a runway", "airplane")
    assert mentions_class("a Maple  Tree in autumn", "maple tree")
    assert not mentions_class("a catalog of shoes", "cat")
    assert not mentions_class("a tree by a maple", "maple tree")


SENTENCES = ["The cat sleeps.", "the  cat sleeps.", "A dog runs.", "", "A cat and a dog.", "Cats everywhere", "cat 4"]


def test_select_sentences_dedupes_and_keeps_a_seeded_random_limit_as_the_papers_code():
    unique = ["The cat sleeps.", "A dog runs.", "A cat and a dog.", "Cats everywhere", "cat 4"]
    assert select_sentences("cat", SENTENCES, limit=10) == unique  # no filter: a dog sentence stays
    drawn = select_sentences("cat", SENTENCES, limit=3, seed=0)
    assert len(drawn) == 3 and set(drawn) <= set(unique)
    assert drawn == sorted(drawn, key=unique.index)  # in the order the model wrote them
    assert drawn == select_sentences("cat", SENTENCES, limit=3, seed=0)  # seeded
    assert len({tuple(select_sentences("cat", SENTENCES, 3, seed=s)) for s in range(10)}) > 1


def test_select_sentences_can_require_the_class_name():
    named = ["The cat sleeps.", "A cat and a dog.", "Cats everywhere", "cat 4"]
    assert select_sentences("cat", SENTENCES, limit=10, require_class_name=True) == named


def test_basic_prompts_use_the_template():
    space = LabelSpace("eurosat", ("forest", "river"))
    prompts = basic_prompts(space, space.default_template)
    assert [p.text for p in prompts] == ["a centered satellite photo of forest", "a centered satellite photo of river"]
    assert [(p.prompt_id, p.class_id, p.source) for p in prompts] == [(0, 0, "basic"), (1, 1, "basic")]


def test_language_enhancement_wraps_sentences_and_falls_back_per_class():
    space = LabelSpace("x", ("cat", "dog"))
    sentences = {0: ["a cat on a mat", "a cat on a mat", "a bird"], 1: ["a bird", "nothing"]}
    prompts = language_enhanced_prompts(space, "a photo of a {}", sentences, limit=5, require_class_name=True)
    assert [(p.prompt_id, p.class_id, p.text, p.source) for p in prompts] == [
        (0, 0, "a photo of a a cat on a mat", "language_enhancement"),
        (1, 1, "a photo of a dog", "basic_fallback"),
    ]
    unfiltered = language_enhanced_prompts(space, "a photo of a {}", {0: ["a bird"], 1: []}, limit=5)
    assert [(p.text, p.source) for p in unfiltered] == [
        ("a photo of a a bird", "language_enhancement"),
        ("a photo of a dog", "basic_fallback"),  # no sentence at all: the B prompt
    ]
