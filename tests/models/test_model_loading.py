"""Seq2seq (LE) and CLIP weights saved to a folder load back through the code path a hub id uses."""

import numpy as np
import pytest
import torch
from PIL import Image

from synthvision.core.data_config import ClipConfig, SentenceModelConfig
from synthvision.core.errors import ConfigError, ModelLoadError
from synthvision.models.clip import ClipModel, save_clip, tiny_clip_config
from synthvision.models.sentences import build_tiny_sentence_model, load_sentence_model, sample_sentences
from synthvision.stages.units import ensure


def test_sentence_model_round_trip_and_deterministic_sampling(tmp_path):
    model, tokenizer = build_tiny_sentence_model()
    model.save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    config = SentenceModelConfig(model=str(tmp_path / "t5"), max_new_tokens=8, batch_size=3)
    loaded, loaded_tokenizer = load_sentence_model(config)
    first = sample_sentences(loaded, loaded_tokenizer, "cat", 5, config, seed=0)
    assert len(first) == 5
    assert first == sample_sentences(model.eval(), tokenizer, "cat", 5, config, seed=0)
    assert first != sample_sentences(loaded, loaded_tokenizer, "cat", 5, config, seed=1)


def test_sentence_model_missing_folder():
    with pytest.raises(ModelLoadError, match="prompts.sentence_model.model: local folder './missing' does not exist"):
        load_sentence_model(SentenceModelConfig(model="./missing"))


def test_clip_local_dir_round_trip(tmp_path):
    tiny = ClipModel.load(ClipConfig(model="tiny"))
    save_clip(tiny.model, tiny_clip_config(), tmp_path / "clip")
    loaded = ClipModel.load(ClipConfig(model=f"local-dir:{tmp_path / 'clip'}"))
    images = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (32, 32), (0, 0, 255))]
    np.testing.assert_allclose(loaded.encode_images(images), tiny.encode_images(images), rtol=1e-5, atol=1e-6)
    classes = loaded.text_classifier(("red", "blue"), ["a photo of a {}", "a {}"])
    assert classes.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(classes, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        classes, tiny.text_classifier(("red", "blue"), ["a photo of a {}", "a {}"]), rtol=1e-5, atol=1e-6
    )


def test_clip_errors(tmp_path):
    with pytest.raises(ConfigError, match="clip.model: unknown open_clip model 'ViT-Huge-9000'"):
        ClipModel.load(ClipConfig(model="ViT-Huge-9000"))
    with pytest.raises(ModelLoadError, match="is not an open_clip checkpoint folder"):
        ClipModel.load(ClipConfig(model=f"local-dir:{tmp_path}"))


def test_language_enhancement_stage_end_to_end_on_the_tiny_model(make_config):
    from synthvision.run import open_run

    le = {"strategy": "language_enhancement", "sentences_per_class": 4, "oversample": 2}
    run = open_run(make_config(prompts={**le, "sentence_model": {"max_new_tokens": 6}}))
    table, expanded = ensure(run, "prompts")
    # as the paper's code: 4 + 2 sampled per class, deduped, 4 kept, none filtered out
    assert expanded and [p.class_id for p in table] == [0] * 4 + [1] * 4 + [2] * 4
    assert {p.source for p in table} == {"language_enhancement"} and len({p.text for p in table}) == 12
    assert ensure(run, "prompts") == (table, False)
    # requiring the class name: the random tiny model never writes one, every class falls back to B
    named = open_run(make_config(output=run.storage.url + "-named", prompts={**le, "require_class_name": True}))
    assert [(p.text, p.source) for p in ensure(named, "prompts")[0]] == [
        (f"a photo of a {c}", "basic_fallback") for c in ("red", "green", "blue")
    ]


def test_openai_weights_get_the_quick_gelu_they_were_trained_with():
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    openai = ClipConfig(model="RN50", pretrained="openai")
    assert openai.uses_quick_gelu and get_pretrained_cfg("RN50", "openai")["quick_gelu"]  # as open_clip records
    assert not ClipConfig(model="RN50").uses_quick_gelu and not ClipConfig(model="tiny").uses_quick_gelu
    assert not ClipConfig(model="RN50", pretrained="openai", quick_gelu=False).uses_quick_gelu  # the switch wins
    # the module tree open_clip builds with it (no weights loaded): QuickGELU in the text tower
    model = open_clip.create_model("RN50", pretrained=None, force_quick_gelu=openai.uses_quick_gelu)
    activations = {type(module).__name__ for module in model.transformer.modules()}
    assert "QuickGELU" in activations and "GELU" not in activations


def test_a_template_ensemble_head_is_the_mean_of_normalised_template_embeddings():
    import torch

    clip = ClipModel.load(ClipConfig(model="tiny"))
    classes, templates = ("red", "blue"), ["a photo of a {}.", "a blurry photo of the {}."]
    head = clip.text_classifier(classes, templates)
    with torch.no_grad():
        per_template = [
            torch.nn.functional.normalize(
                clip.model.encode_text(clip.tokenizer([t.format(c) for c in classes])), dim=-1
            )
            for t in templates
        ]
    expected = torch.nn.functional.normalize(torch.stack(per_template).mean(0), dim=-1).numpy()
    np.testing.assert_allclose(head, expected, atol=1e-5)
    assert not np.allclose(head, clip.text_classifier(classes, templates[:1]), atol=1e-3)  # the ensemble matters


def test_the_load_test_clip_preprocesses_as_rn50_and_waits_its_batch_time():
    import time

    from synthvision.models.clip import load_clip, open_clip_name

    clip = load_clip(ClipConfig(model="loadtest", seconds_per_batch=0.05))
    pixels = clip.pixels.image(Image.new("RGB", (320, 256), (255, 0, 0)))
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    floats = clip.pixels.floats(clip.pixels.stack([pixels]))
    assert abs(float(floats[0, 0].mean()) - (1 - 0.48145466) / 0.26862954) < 1e-4  # OpenAI's normalisation
    started = time.perf_counter()
    features = clip.encode_pixels(clip.pixels.stack([pixels] * 3))
    assert time.perf_counter() - started >= 0.05 and features.shape == (3, 16)
    heads = clip.text_classifier(("red", "blue"), ["{}"])
    assert heads.shape == (2, 16) and np.allclose(np.linalg.norm(heads, axis=1), 1)
    assert load_clip(ClipConfig(model="loadtest:32")).preprocess(Image.new("RGB", (64, 64))).shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="loadtest:SIZE"):
        open_clip_name(ClipConfig(model="loadtest:big"))


@pytest.mark.parametrize("model", ["tiny", "tiny-rn"])
def test_clip_features_are_those_of_open_clips_whole_preprocessing(model):
    """The uint8 hand-off (the transform split at ToTensor) changes no input float and so no feature."""
    import open_clip

    clip = ClipModel.load(ClipConfig(model=model))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(64, 64), (90, 40)]]
    images.append(Image.new("L", (50, 70), 128))  # converted to RGB, as open_clip does
    whole = torch.stack([clip.preprocess(image) for image in images])
    assert any(isinstance(step, open_clip.transform.MaybeToTensor) for step in clip.preprocess.transforms)
    assert torch.equal(clip.pixels.of(images), whole)
    with torch.inference_mode():
        expected = clip.model.encode_image(whole).numpy()
    assert np.array_equal(clip.encode_images(images), expected)


def test_clip_in_bfloat16_on_the_cpu_gives_nearly_the_float32_features():
    from synthvision.models.clip import load_clip

    images = [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 90, 200), (30, 30, 30))]
    full = load_clip(ClipConfig(model="tiny")).encode_images(images)
    half = load_clip(ClipConfig(model="tiny", dtype="bfloat16")).encode_images(images)
    assert half.dtype == np.float32 and not np.array_equal(full, half)  # it did run in bfloat16
    cosine = (full * half).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert cosine.min() > 0.99


@pytest.mark.slow
def test_a_compiled_clip_image_tower_gives_the_eager_features():
    from synthvision.models.clip import load_clip

    images = [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 90, 200))]
    eager = load_clip(ClipConfig(model="tiny")).encode_images(images)
    compiled = load_clip(ClipConfig(model="tiny", compile=True))
    assert type(compiled.model.visual).__name__ != "OptimizedModule"  # compiled in place: same keys
    np.testing.assert_allclose(compiled.encode_images(images), eager, rtol=1e-4, atol=1e-5)
