"""Captions for the toy models' training images: the text side of the toy world (pure: no torch).

Real generators and CLIPs learn from captions written by people, who name things loosely. The toy
world keeps two caption sources apart, as the paper's GLIDE and CLIP were trained on different data:

- **GLIDE's captions** name the class by its label-space name, in varied templates and sentences,
  so its text encoder has to read the class word out of text (not an id) and a new template or an
  LE/LLM sentence that mentions the class still works.
- **CLIP's captions** name the class the way a web caption might: often by a synonym or a broader
  word ("tee", "shoe", "top"), and for some classes never by the label-space name (pullovers are
  "sweaters" and "jumpers", coats "jackets", sneakers "trainers"). The image tower still learns
  every class (the captions are informative), but a zero-shot head built from the label-space names
  knows some of them only as words it never read: useful but imperfect, as real CLIP is on the
  paper's harder datasets. That gap is what classifier tuning on synthetic data repairs.
"""

from __future__ import annotations

import random

from synthvision.datasets.fashion_mnist import CLASSES

GLIDE_TEMPLATES = (
    "a photo of a {}",
    "a photo of the {}",
    "a {}",
    "the {}",
    "a picture of a {}",
    "an image of a {}",
    "a grayscale photo of a {}",
    "a black and white photo of a {}",
    "a product photo of a {}",
    "a catalogue photo of a {}",
    "a low resolution photo of a {}",
    "a small photo of a {}",
    "a centered photo of a {}",
    "a close-up photo of a {}",
    "a {} on a black background",
    "a {} for sale",
    "this is a {}",
    "one {}",
)
# Sentences as a language model might write them (LE / LLM prompts): the class word inside a scene.
GLIDE_SENTENCES = (
    "a {} lying flat on a dark table",
    "someone is selling this {} online",
    "a shop window shows a {}",
    "the {} is photographed from the front",
    "a new {} in a clothing store",
    "a {} seen from above on a dark floor",
    "my favourite {} in the wardrobe",
    "a {} in a fashion catalogue",
)
SENTENCE_RATE = 0.3  # fraction of GLIDE captions that are sentences rather than templates

# The toy CLIP's zero-shot templates are those of its own captions (as real CLIP's are the kinds of
# text it saw).
CLIP_TEMPLATES = (
    "a photo of a {}",
    "a picture of a {}",
    "a product photo of a {}",
    "a grayscale photo of a {}",
    "a {} for sale",
    "an image of a {}",
)

# How CLIP's captions name each class: word -> probability. Synonyms and broader words dominate, and
# three label-space names never appear.
CLIP_NAMING: dict[str, dict[str, float]] = {
    "t-shirt": {"t-shirt": 0.3, "tee": 0.4, "top": 0.3},
    "trouser": {"trouser": 0.2, "trousers": 0.4, "pants": 0.4},
    "pullover": {"sweater": 0.6, "jumper": 0.4},  # never "pullover"
    "dress": {"dress": 0.7, "gown": 0.3},
    "coat": {"jacket": 0.7, "parka": 0.3},  # never "coat"
    "sandal": {"sandal": 0.5, "flip-flop": 0.2, "shoe": 0.3},
    "shirt": {"shirt": 0.4, "blouse": 0.4, "top": 0.2},
    "sneaker": {"trainer": 0.6, "shoe": 0.4},  # never "sneaker"
    "bag": {"bag": 0.6, "handbag": 0.4},
    "ankle boot": {"boot": 0.7, "shoe": 0.3},  # never "ankle"
}


def glide_caption(class_name: str, rng: random.Random) -> str:
    """A caption for a GLIDE training image of `class_name`: a template or a sentence."""
    pool = GLIDE_SENTENCES if rng.random() < SENTENCE_RATE else GLIDE_TEMPLATES
    return rng.choice(pool).format(class_name)


def clip_caption(class_id: int, rng: random.Random) -> str:
    """A caption for a CLIP training image of class `class_id`, named the loose way (`CLIP_NAMING`)."""
    naming = CLIP_NAMING[CLASSES[class_id]]
    word = rng.choices(list(naming), weights=list(naming.values()))[0]
    return rng.choice(CLIP_TEMPLATES).format(word)


def caption_corpus(seed: int = 0, per_class: int = 200) -> list[str]:
    """Every GLIDE caption form, plus sampled ones: the text a GLIDE tokenizer is trained on."""
    rng = random.Random(seed)
    texts = [form.format(name) for name in CLASSES for form in GLIDE_TEMPLATES + GLIDE_SENTENCES]
    texts += [glide_caption(name, rng) for name in CLASSES for _ in range(per_class)]
    return texts
