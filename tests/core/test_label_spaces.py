import pytest

from synthvision.core.builtin_label_spaces import BUILTIN_TABLE, PAPER_TABLE_1
from synthvision.core.errors import DataError
from synthvision.core.label_spaces import BUILTIN_LABEL_SPACES, load_label_space, parse_class_names


def test_builtin_label_spaces():
    assert load_label_space("cifar10").classes[:3] == ("airplane", "automobile", "bird")
    cifar100 = load_label_space("cifar100")
    assert cifar100.num_classes == 100 and "aquarium fish" in cifar100.classes
    eurosat = load_label_space("eurosat")
    assert eurosat.num_classes == 10
    assert eurosat.default_template == "a centered satellite photo of {}"
    assert load_label_space("cifar10").default_template == "a photo of a {}"
    fashion = load_label_space("fashion-mnist")
    assert fashion.classes[0] == "t-shirt" and fashion.classes[9] == "ankle boot" and fashion.num_classes == 10


def test_comment_lines_and_blank_lines_are_skipped():
    text = "# CIFAR-style animals\ncat\n\n  # the second one\ndog\n   \nbird  # not a comment mid-line\n"
    assert parse_class_names(text, "x.txt") == ("cat", "dog", "bird # not a comment mid-line")
    with pytest.raises(DataError, match="is empty"):
        parse_class_names("# only a comment\n\n", "x.txt")


def test_user_files(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("golden  retriever\nTabby cat\n\n")
    assert load_label_space(str(text)).classes == ("golden retriever", "Tabby cat")
    as_json = tmp_path / "mine.json"
    as_json.write_text('["a", "b"]')
    space = load_label_space(str(as_json))
    assert (space.name, space.classes) == ("mine", ("a", "b"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("cat\ndog\nCat\n", "entry 3 'Cat' duplicates entry 1"),
        ('["cat", 3]', "must be a list of class names \\(strings\\)"),
        ('["cat", "  "]', "entry 2 is blank"),
        ('["cat",', "invalid JSON"),
    ],
)
def test_bad_label_files(text, message):
    with pytest.raises(DataError, match=message):
        parse_class_names(text, "x.txt")


def test_unknown_label_space():
    with pytest.raises(DataError, match="neither a built-in"):
        load_label_space("imagenet-9000k")


def test_zero_shot_and_filter_templates_follow_the_papers_code():
    cifar = load_label_space("cifar10")
    assert len(cifar.zero_shot_templates) == 18 == len(set(cifar.zero_shot_templates))
    assert cifar.zero_shot_templates[:3] == (
        "a photo of a {}.",
        "a blurry photo of a {}.",
        "a black and white photo of a {}.",
    )
    assert "a photo of the big {}." in cifar.zero_shot_templates
    assert load_label_space("cifar100").zero_shot_templates == cifar.zero_shot_templates
    assert cifar.filter_template == "a photo of a {}."  # CF: one prompt, with its period
    eurosat = load_label_space("eurosat")
    assert eurosat.zero_shot_templates == ("a centered satellite photo of {}.",) == (eurosat.filter_template,)
    assert load_label_space("fashion-mnist").zero_shot_templates == ("a photo of a {}.",)


# The class counts the datasets have (Caltech101 as CLIP counts it, with its background class).
TABLE_1_COUNTS = {
    "cifar10": 10,
    "cifar100": 100,
    "caltech101": 102,
    "caltech256": 257,
    "imagenet": 1000,
    "sun397": 397,
    "aircraft": 100,
    "birdsnap": 500,
    "cars": 196,
    "cub": 200,
    "flowers": 102,
    "food": 101,
    "pets": 37,
    "dtd": 47,
    "eurosat": 10,
    "imagenet-sketch": 1000,
    "imagenet-r": 200,
}


@pytest.mark.parametrize("name", sorted(TABLE_1_COUNTS))
def test_every_dataset_of_table_1_is_built_in(name):
    space = load_label_space(name)
    assert space.num_classes == TABLE_1_COUNTS[name]
    folded = [" ".join(c.lower().split()) for c in space.classes]
    assert len(set(folded)) == len(folded), "no two classes read the same"
    assert all(c == c.strip() and c and "#" not in c for c in space.classes)
    for template in (*space.zero_shot_templates, space.filter_template, space.default_template):
        assert template.count("{}") == 1, template
    assert len(set(space.zero_shot_templates)) == len(space.zero_shot_templates)


def test_table_1_is_the_papers_17():
    assert set(PAPER_TABLE_1) == set(TABLE_1_COUNTS) and len(PAPER_TABLE_1) == 17
    assert set(BUILTIN_LABEL_SPACES) == set(TABLE_1_COUNTS) | {"fashion-mnist"}


def test_imagenet_is_clips_names_with_its_two_repeats_made_distinct():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, SIMPLE_IMAGENET_TEMPLATES

    imagenet = load_label_space("imagenet")
    pairs = enumerate(zip(imagenet.classes, IMAGENET_CLASSNAMES, strict=True))
    changed = {i: (ours, clips) for i, (ours, clips) in pairs if ours != clips}
    assert changed == {744: ("projectile", "missile"), 836: ("sunglass", "sunglasses")}
    assert load_label_space("imagenet-sketch").classes == imagenet.classes
    assert set(load_label_space("imagenet-r").classes) <= set(imagenet.classes)
    assert imagenet.zero_shot_templates == tuple(t("{}") for t in SIMPLE_IMAGENET_TEMPLATES)
    assert imagenet.filter_template == "a photo of a {}."


def test_domain_templates_and_the_eurosat_names_the_papers_code_cuts():
    assert load_label_space("cub").zero_shot_templates == ("a photo of a {}, a type of bird.",)
    assert load_label_space("cub").filter_template == "a photo of a {}, a type of bird."
    assert load_label_space("dtd").filter_template.format("banded") == "banded texture."
    assert len(load_label_space("cars").zero_shot_templates) == 8
    assert load_label_space("sun397").zero_shot_templates == ("a photo of a {}.", "a photo of the {}.")
    # The paper's code reads CoOp's EuroSAT names as name[2:] ("nual crop land"); the intent is whole names.
    assert load_label_space("eurosat").classes[0] == "annual crop land"
    caltech256 = load_label_space("caltech256").classes
    assert "t-shirt" in caltech256 and "golden gate bridge" in caltech256
    assert not any(c.endswith("101") for c in caltech256)


def test_readmes_table_of_built_in_label_spaces_is_the_codes():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Built-in label spaces", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    expected = []
    for row in BUILTIN_TABLE:
        templates = row.zero_shot_templates
        head = f"`{templates[0]}`" if len(templates) == 1 else f"{len(templates)} templates"
        count = load_label_space(row.name).num_classes
        expected.append(f"| `{row.name}` | {row.title} | {count} | {head} | `{row.filter_template}` | {row.source} |")
    assert rows == expected
