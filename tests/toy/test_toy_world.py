"""The shipped toy world behaves like the real one it stands in for: the toy GLIDE and CLIP load
through the same code paths as real checkpoints, the GLIDE draws what its prompt names (judged by a
classifier trained only on real images), and classifier tuning on its images beats the toy CLIP's
zero-shot head on real test images, which a wrong guidance sign, normalisation or sampler would break."""

import numpy as np
import pytest

from synthvision.core.data_config import ClipConfig, GeneratorConfig
from synthvision.core.learning_config import TrainingConfig
from synthvision.datasets.fashion_mnist import CLASSES
from synthvision.methods.classifier_tuning import predict, top1, tune_classifier, zero_shot_head
from synthvision.methods.filtering import ZeroShotHead
from synthvision.models.clip import ClipModel
from synthvision.models.generators.glide.backend import GlideGenerator, load_glide_models
from synthvision.toy.assets import TEST_SUBSET, read_labelled_tar, shipped
from synthvision.toy.captions import CLIP_TEMPLATES
from synthvision.toy.judge import judge_images, judge_pixels, load_judge
from synthvision.toy.measures import class_prompts, glide_samples
from tests.conftest import REPO

TOY = REPO / "synthvision" / "data" / "toy"
PER_CLASS = 7  # 70 samples: about 20 s on 2 cores


@pytest.fixture(scope="module")
def samples():
    prompts, labels, seeds = class_prompts(PER_CLASS)
    return glide_samples(str(TOY / "glide"), prompts, seeds, guidance=3.0, base_respacing="25"), np.asarray(labels)


@pytest.fixture(scope="module")
def clip():
    return ClipModel.load(ClipConfig(model=f"local-dir:{TOY / 'clip'}", device="cpu"))


@pytest.fixture(scope="module")
def test_subset():
    return read_labelled_tar(shipped(TEST_SUBSET))


def test_the_toy_glide_loads_from_a_weights_folder_like_the_released_one():
    models = load_glide_models(str(TOY / "glide"))
    assert (models.base.arch.image_size, models.upsampler.arch.image_size, models.upsampler.arch.super_res) == (
        16,
        32,
        True,
    )
    assert models.tokenizer.n_vocab == models.base.arch.n_vocab
    generator = GlideGenerator.from_config(
        GeneratorConfig(backend="glide", model=str(TOY / "glide"), resolution=32, device="cpu")
    )
    assert generator.base.arch.image_size == 16 and generator.upsampler.arch.image_size == 32
    with pytest.raises(Exception, match="resolution is 64, but this GLIDE makes 32 px"):
        GlideGenerator.from_config(
            GeneratorConfig(backend="glide", model=str(TOY / "glide"), resolution=64, device="cpu")
        )


def test_the_toy_clip_loads_through_local_dir_with_its_preprocessing(clip):
    assert clip.model.visual.image_size == (32, 32)
    assert clip.text_classifier(CLASSES, list(CLIP_TEMPLATES)).shape == (10, 64)


def test_the_judge_knows_real_test_images(test_subset):
    assert (judge_pixels(load_judge(TOY / "judge"), test_subset.images) == test_subset.labels).mean() > 0.88


@pytest.mark.slow
def test_toy_glide_images_show_their_prompts_class(samples):
    images, labels = samples
    assert len(images) == 10 * PER_CLASS and images[0].size == (32, 32)
    judged = judge_images(load_judge(TOY / "judge"), images)
    assert (judged == labels).mean() >= 0.7, np.bincount(judged[judged != labels], minlength=10)


@pytest.mark.slow
def test_tuning_on_toy_glide_images_beats_clip_zero_shot_on_real_test_images(samples, clip, test_subset):
    from PIL import Image

    images, labels = samples
    head = ZeroShotHead(clip.text_classifier(CLASSES, list(CLIP_TEMPLATES)), clip.logit_scale)
    synthetic = clip.encode_images(images)
    tuned = tune_classifier(
        synthetic,
        labels,
        head.logits(synthetic),
        zero_shot_head(head.class_embeddings, head.logit_scale),
        TrainingConfig(loss="sce", epochs=30, batch_size=16, device="cpu"),
        seed=0,
    )
    real = clip.encode_images([Image.fromarray(pixels) for pixels in test_subset.images])
    zero_shot = top1(head.logits(real).argmax(axis=1), test_subset.labels)
    assert top1(predict(tuned.head, real), test_subset.labels) > zero_shot + 3, zero_shot  # 2,000 images: 1 point is 20
