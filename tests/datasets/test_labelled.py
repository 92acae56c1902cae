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


class CountingEncoder:
    """Stands in for CLIP: an image's feature is its mean colour; counts the images it encodes."""

    def __init__(self):
        self.encoded = 0

    def encode_images(self, images):
        import numpy as np

        self.encoded += len(images)
        return np.stack([np.asarray(image, dtype=np.float32).mean(axis=(0, 1)) for image in images])


def test_a_pool_s_labels_are_read_without_encoding_and_only_the_drawn_positions_are_encoded(tmp_path):
    import numpy as np

    from synthvision.datasets.labelled import encode_labelled, read_labelled

    (tmp_path / "colours.txt").write_text("red\ngreen\nblue\n")
    colours = load_label_space(str(tmp_path / "colours.txt"))
    tmp_path = tmp_path / "pool"
    for index, (name, value) in enumerate([("red", 10), ("red", 20), ("green", 30), ("green", 40), ("blue", 50)]):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (value, value, value)).save(tmp_path / name / f"{index}.png")
    kept, labels, digests = read_labelled(str(tmp_path), "imagefolder", colours)
    assert kept == []  # nothing decoded is held for a pool that is only drawn from
    everything = encode_labelled(CountingEncoder(), str(tmp_path), "imagefolder", colours, 2)
    assert labels.tolist() == everything.labels.tolist() and digests == everything.digests and len(labels) == 5
    encoder = CountingEncoder()
    drawn = encode_labelled(encoder, str(tmp_path), "imagefolder", colours, 2, positions=np.array([1, 3]))
    assert encoder.encoded == 2  # the other three are read, not encoded
    assert drawn.labels.tolist() == labels[[1, 3]].tolist() and drawn.digests == [digests[1], digests[3]]
    assert np.array_equal(drawn.features, everything.features[[1, 3]])
