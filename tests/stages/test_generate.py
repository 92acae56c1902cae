import json
import tarfile
import time

import numpy as np
import pytest

from synthvision.core.data_config import GeneratorConfig
from synthvision.core.errors import ModelLoadError
from synthvision.models.generators.diffusers_backend import DiffusersGenerator, load_pipeline
from synthvision.models.generators.tiny import build_tiny_pipeline
from synthvision.run import Run
from synthvision.stages import generate
from synthvision.stages.units import ensure
from synthvision.storage.tars import decode_image, read_samples
from tests.conftest import tiny_config

CONFIG = GeneratorConfig(backend="tiny", steps=2, resolution=32, batch_size=3)


@pytest.fixture(scope="module")
def tiny():
    return DiffusersGenerator.from_config(CONFIG)


def pixels(images):
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


def test_each_image_is_fixed_by_its_seed(tiny):
    a = pixels(tiny.generate(["a photo of a red", "a photo of a blue"], [1, 2]))
    b = pixels(tiny.generate(["a photo of a blue"], [2]))
    c = pixels(tiny.generate(["a photo of a red"], [99]))
    assert a.shape == (2, 32, 32, 3)
    assert np.abs(a[1] - b[0]).max() <= 1  # same prompt+seed, other batch: same image (up to rounding)
    assert np.abs(a[0] - c[0]).mean() > 5  # another seed: another image


def test_saved_pipeline_loads_through_the_hub_id_code_path(tmp_path, tiny):
    build_tiny_pipeline().save_pretrained(tmp_path / "pipe")
    loaded = DiffusersGenerator.from_config(
        GeneratorConfig(backend="diffusers", model=str(tmp_path / "pipe"), steps=2, resolution=32)
    )
    np.testing.assert_array_equal(
        pixels(loaded.generate(["a photo of a red"], [5])), pixels(tiny.generate(["a photo of a red"], [5]))
    )


def test_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="generator.model: local folder '/nope/pipe' does not exist"):
        load_pipeline("/nope/pipe", dtype=None)
    with pytest.raises(
        ModelLoadError, match="could not load diffusers pipeline 'someone/not-here'.*local folder|set generator.model"
    ):
        load_pipeline("someone/not-here", dtype=None)


def two_colour_run(tmp_path, output="run", **sections) -> Run:
    """A run of 2 classes x 3 images in shards of `shard_size`, its prompt table committed."""
    labels = tmp_path / "red-blue.txt"
    labels.write_text("red\nblue\n")
    sections.setdefault("shards", {"images_per_class": 3, "shard_size": 4})
    run = Run(tiny_config(tmp_path / output, labels, **sections))
    ensure(run, "prompts")
    return run


def test_generate_writes_a_webdataset_tar_and_is_skipped_when_committed(tmp_path, tiny):
    run = two_colour_run(tmp_path)
    loads = []

    def get_generator():
        loads.append(1)
        return tiny

    run.generator = get_generator
    spec = run.plan.shard(0)
    manifest, generated = ensure(run, "generate", 0)
    assert generated and manifest.count == 4 and loads == [1]
    with run.storage.open(manifest.data_file) as stream:
        samples = list(read_samples(stream, manifest.data_file))
    assert [s["__key__"] for s in samples] == [s.key for s in spec.samples]
    meta = json.loads(samples[1]["json"])
    sample = spec.samples[1]
    assert meta["prompt"] == run.prompts[sample.prompt_id].text and meta["class_id"] == sample.class_id
    assert meta["config_hash"] == run.hashes["generate"] and meta["seed"] == sample.seed and meta["generator"] == "tiny"
    assert int(samples[1]["cls"]) == sample.class_id
    assert decode_image(samples[0]["png"]).size == (32, 32)

    again, generated = ensure(run, "generate", 0)
    assert not generated and loads == [1] and again == manifest

    # same spec in another folder: a byte-identical tar (reproducible shard)
    other = two_colour_run(tmp_path, "again")
    other.generator = lambda: tiny
    assert ensure(other, "generate", 0)[0].sha256 == manifest.sha256


def test_a_shard_killed_mid_write_leaves_nothing_under_its_final_name(tmp_path, tiny):
    run = two_colour_run(tmp_path, shards={"shard_size": 6}, generator={"image_format": "jpg"})

    class Dying:
        name, batch_size, calls = "dying", 2, 0

        def generate(self, prompts, seeds):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("GPU fell off the bus")
            return tiny.generate(prompts, seeds)

    run.generator = Dying
    with pytest.raises(RuntimeError):
        ensure(run, "generate", 0)
    assert run.storage.list("shards") == []
    run.generator = lambda: tiny
    manifest, generated = ensure(run, "generate", 0)
    assert generated and manifest.count == 6
    with tarfile.open(run.storage.path(manifest.data_file)) as tar:
        names = tar.getnames()
    assert len(names) == 18 and {name.rsplit(".", 1)[1] for name in names} == {"jpg", "json", "cls"}


class BlackForOddSeeds:
    """A generator that returns an all-black image for odd seeds, as NaN latents decode."""

    name, batch_size = "black-for-odd-seeds", 2

    def generate(self, prompts, seeds):
        from PIL import Image

        return [Image.new("RGB", (8, 8), (0, 0, 0) if seed % 2 else (30, 60, 90)) for seed in seeds]


def test_all_black_images_are_flagged_in_the_sample_and_counted_in_the_manifest(tmp_path):
    run = two_colour_run(tmp_path, shards={"shard_size": 6})
    run.generator = BlackForOddSeeds
    spec = run.plan.shard(0)
    manifest, _ = ensure(run, "generate", 0)
    odd = sum(sample.seed % 2 for sample in spec.samples)
    assert 0 < odd < len(spec.samples) and manifest.dropped == {"all_black": odd}
    with run.storage.open(manifest.data_file) as stream:
        flags = {
            json.loads(s["json"])["seed"]: json.loads(s["json"]).get("flags")
            for s in read_samples(stream, manifest.data_file)
        }
    assert flags == {sample.seed: ["all_black"] if sample.seed % 2 else None for sample in spec.samples}


def test_a_10k_character_unicode_prompt_is_cut_quietly_to_the_text_encoder(tiny, capfd):
    long = "a photo of a café ☕ 東京タワー " + "very " * 2000
    images = tiny.generate([long, "a photo of a red"], [3, 4])
    cut, short = tiny._fit([long, "a photo of a red"])
    tokenizer = tiny.pipeline.tokenizer
    assert len(long) > 10_000 and long.startswith(cut) and short == "a photo of a red"
    assert len(tokenizer(cut).input_ids) <= tokenizer.model_max_length < len(tokenizer(long[: len(cut) + 1]).input_ids)
    assert np.array_equal(pixels(images[:1]), pixels(tiny.generate([cut], [3])))
    assert max(map(len, capfd.readouterr().err.splitlines() or [""])) < 1000


def test_encoding_beside_the_model_gives_the_serial_shard(tmp_path, tiny):
    """Threads encode and write while the model runs: the tar is the serial path's, byte for byte."""
    shas = []
    for workers in (0, 3):
        run = two_colour_run(tmp_path, f"w{workers}", shards={"images_per_class": 5, "shard_size": 10})
        run.config.generator.workers = workers
        run.generator = lambda: tiny
        shas.append(generate.generate(run, 0).sha256)
    assert shas[0] == shas[1]


def test_the_load_test_generator_waits_and_returns_textures_fixed_by_seed():
    from synthvision.models.generators.loadtest import LoadTestGenerator

    generator = LoadTestGenerator(resolution=64, batch_size=4, seconds_per_batch=0.05)
    started = time.perf_counter()
    first = generator.generate(["a"] * 4, [1, 2, 65, 3])
    assert time.perf_counter() - started >= 0.05
    assert first[0].size == (64, 64) and first[0].tobytes() == first[2].tobytes()  # 64 textures, by seed
    assert first[0].tobytes() != first[1].tobytes()
    assert generator.generate(["b"], [2])[0].tobytes() == first[1].tobytes()


def test_compile_wraps_the_denoiser_in_place():
    """`generator.compile` compiles the UNet in place (its keys unchanged); the compiled call itself is
    torch's, exercised on CPU by the compiled CLIP test."""
    compiled = DiffusersGenerator.from_config(CONFIG.model_copy(update={"compile": True}))
    assert compiled.pipeline.unet._compiled_call_impl is not None
    assert DiffusersGenerator.from_config(CONFIG).pipeline.unet._compiled_call_impl is None


def test_while_it_runs_the_stage_shows_the_latest_shards_and_at_its_end_the_first(make_config):
    from tests.helpers import generated_run

    run = generated_run(make_config())
    latest = [generate.committed(run, 2)]
    live = generate.live(run, latest)
    [item] = live.items
    assert (item.key, item.live) == ("contact-sheet", True) and "latest shards (generate is running)" in item.markdown
    assert item.markdown.count("](data:image/") == 1  # the sheet, inline
    [final] = generate.page(run, None, True).items
    assert final.key == item.key and "latest shards" not in final.markdown  # the same artifact, replaced
