"""The built-in label spaces: the 17 datasets of the paper's Table 1, and Fashion-MNIST (the toy world's).

One row per dataset: which class-name file it reads (`synthvision/data/label_spaces/<file>.txt`, one
name per line, in the order of the paper's code), the templates of CLIP's zero-shot head (averaged, as
the paper's code does), CF's single prompt, B's generation prompt, and where the names come from with
every change we made. The paper's code picks templates per dataset by a command-line flag; the rows hold
the ones its commands and scripts name, and the paper's `simple_template` where it names none.
"""

from __future__ import annotations

from dataclasses import dataclass

# B's prompt: "a photo of a [CLASS]" (the paper, appendix); CF's prompt: the same with a period.
DEFAULT_TEMPLATE = "a photo of a {}"
DEFAULT_FILTER_TEMPLATE = "a photo of a {}."

# CLIP's 18 CIFAR templates, which the paper's code averages for CIFAR-10 and CIFAR-100.
CIFAR_TEMPLATES = tuple(
    f"a {quality}photo of {article} {size}{{}}."
    for article in ("a", "the")
    for quality, size in [
        ("", ""),
        ("blurry ", ""),
        ("black and white ", ""),
        ("low contrast ", ""),
        ("high contrast ", ""),
        ("bad ", ""),
        ("good ", ""),
        ("", "small "),
        ("", "big "),
    ]
)
# CLIP's seven-template ImageNet ensemble (its prompt-engineering notebook), the paper's imagenet_template.
IMAGENET_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
SUN397_TEMPLATES = ("a photo of a {}.", "a photo of the {}.")
CARS_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of my {}.",
    "i love my {}!",
    "a photo of my dirty {}.",
    "a photo of my clean {}.",
    "a photo of my new {}.",
    "a photo of my old {}.",
)


@dataclass(frozen=True)
class BuiltinLabelSpace:
    name: str
    title: str
    classes_file: str
    zero_shot_templates: tuple[str, ...]
    source: str
    filter_template: str = DEFAULT_FILTER_TEMPLATE
    prompt_template: str = DEFAULT_TEMPLATE


def _one_template(name: str, title: str, template: str, source: str, prompt: str = DEFAULT_TEMPLATE):
    """A dataset whose zero-shot head and CF both use one domain template (e.g. '..., a type of bird.')."""
    return BuiltinLabelSpace(name, title, name, (template,), source, filter_template=template, prompt_template=prompt)


_PAPER = "the paper's code's class names"
BUILTIN_TABLE: tuple[BuiltinLabelSpace, ...] = (
    BuiltinLabelSpace("cifar10", "CIFAR-10", "cifar10", CIFAR_TEMPLATES, _PAPER),
    BuiltinLabelSpace("cifar100", "CIFAR-100", "cifar100", CIFAR_TEMPLATES, _PAPER),
    BuiltinLabelSpace(
        "caltech101",
        "Caltech101",
        "caltech101",
        (DEFAULT_FILTER_TEMPLATE,),
        "CLIP's 102 names (its background class too)",
    ),
    BuiltinLabelSpace(
        "caltech256",
        "Caltech256",
        "caltech256",
        (DEFAULT_FILTER_TEMPLATE,),
        f"{_PAPER} (folder names): '-101' dropped, '-' read as a space except in t-shirt and yo-yo",
    ),
    BuiltinLabelSpace(
        "imagenet",
        "ImageNet",
        "imagenet",
        IMAGENET_TEMPLATES,
        "CLIP's names (open_clip's IMAGENET_CLASSNAMES); its two repeated names made distinct: "
        "class 744 'missile' -> 'projectile', class 836 'sunglasses' -> 'sunglass' (their WordNet synsets)",
    ),
    BuiltinLabelSpace("sun397", "SUN397", "sun397", SUN397_TEMPLATES, f"{_PAPER} (CoOp's order)"),
    _one_template("aircraft", "Aircraft", "a photo of a {}, a type of aircraft.", f"{_PAPER} (FGVC variants)"),
    _one_template("birdsnap", "Birdsnap", "a photo of a {}, a type of bird.", _PAPER),
    BuiltinLabelSpace("cars", "Cars", "cars", CARS_TEMPLATES, f"{_PAPER} (CoOp's 'year make model' form)"),
    _one_template("cub", "CUB", "a photo of a {}, a type of bird.", _PAPER),
    _one_template("flowers", "Flower", "a photo of a {}, a type of flower.", _PAPER),
    _one_template("food", "Food", "a photo of a {}, a type of food.", _PAPER),
    _one_template("pets", "Pets", "a photo of a {}, a type of pet.", _PAPER),
    _one_template("dtd", "DTD", "{} texture.", _PAPER),
    _one_template(
        "eurosat",
        "EuroSAT",
        "a centered satellite photo of {}.",
        "CoOp's names, which the paper's code uses with their first two characters cut (a bug); kept whole here",
        prompt="a centered satellite photo of {}",
    ),
    BuiltinLabelSpace(
        "imagenet-sketch", "ImageNet-Sketch", "imagenet", IMAGENET_TEMPLATES, "ImageNet's classes (as imagenet)"
    ),
    BuiltinLabelSpace("imagenet-r", "ImageNet-R", "imagenet-r", IMAGENET_TEMPLATES, f"{_PAPER}: 200 of ImageNet's"),
    BuiltinLabelSpace(
        "fashion-mnist",
        "Fashion-MNIST",
        "fashion-mnist",
        (DEFAULT_FILTER_TEMPLATE,),
        "the dataset's 10 class names (the toy world's; not in the paper)",
    ),
)
BUILTINS = {row.name: row for row in BUILTIN_TABLE}
PAPER_TABLE_1 = tuple(row.name for row in BUILTIN_TABLE if row.name != "fashion-mnist")
