from PIL import Image

from synthvision.core.label_spaces import load_label_space
from synthvision.datasets.labelled import iter_labelled


def test_an_image_folder_names_classes_with_underscores_for_spaces_and_slashes(tmp_path):
    aircraft = load_label_space("aircraft")
    for folder, colour in [("F_A-18", "red"), ("Boeing_717", "blue"), ("cessna 172", "green")]:
        (tmp_path / folder).mkdir()
        Image.new("RGB", (4, 4), colour).save(tmp_path / folder / "0.png")
    labels = sorted(label for _, label, _ in iter_labelled(str(tmp_path), "imagefolder", aircraft))
    assert labels == sorted(aircraft.classes.index(name) for name in ("F/A-18", "Boeing 717", "Cessna 172"))


def test_a_demo_test_set_that_cannot_be_drawn_is_refused_when_the_run_opens(tmp_path):
    """Before any work: the colour demo set needs colour class names."""
    import pytest

    from synthvision.core.errors import ConfigError
    from synthvision.run import Run
    from tests.conftest import tiny_config

    animals = tmp_path / "animals.txt"
    animals.write_text("cat\ndog\n")
    with pytest.raises(ConfigError, match="'cat' is not a colour"):
        Run(tiny_config(tmp_path / "out", animals))
    assert not (tmp_path / "out").exists()
