import pytest

from synthvision.core.errors import DataError
from synthvision.core.label_spaces import load_label_space, parse_class_names


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
        ("cat\n\ndog\n", "entry 2 is blank"),
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
        load_label_space("imagenet-9000")


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
