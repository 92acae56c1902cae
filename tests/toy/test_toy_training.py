"""The toy world's training scripts: each runs a few steps on real Fashion-MNIST images (the shipped
train pool) and its loss falls; runs are seeded, so the same seed gives the same losses; the GLIDE
tokenizer is a real BPE in GPT-2's file format."""

import json

import numpy as np
import pytest

from synthvision.models.generators.glide.tokenizer import GlideTokenizer
from synthvision.toy.assets import TRAIN_POOL, read_labelled_tar, shipped
from synthvision.toy.captions import CLIP_NAMING, caption_corpus, clip_caption, glide_caption
from synthvision.toy.clip_training import ClipTraining, train_clip
from synthvision.toy.glide_training import TrainSettings, toy_tokenizer, train_glide_model, write_tokenizer
from synthvision.toy.judge import JudgeTraining, train_judge


@pytest.fixture(scope="module")
def pool():
    return read_labelled_tar(shipped(TRAIN_POOL))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """The toy BPE, written in GPT-2's format and read back the way the GLIDE backend reads it."""
    vocab, merges = toy_tokenizer()
    folder = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(folder, vocab, merges)
    return GlideTokenizer.from_folder(folder)


def falls(losses: list[float]) -> bool:
    return np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])


def test_the_glide_tokenizer_is_a_byte_level_bpe_of_the_captions(tokenizer):
    assert tokenizer.end_token == tokenizer.n_vocab - 1 < 600
    words = [tokenizer._bpe.decode([token]) for token in tokenizer.encode("a photo of a ankle boot")]
    assert words == ["a", " photo", " of", " a", " ankle", " boot"]  # caption words are whole tokens
    # text it never saw still encodes (bytes), and decodes back
    assert tokenizer._bpe.decode(tokenizer.encode("a purple elephant")) == "a purple elephant"
    assert len(set(caption_corpus())) > 100


def test_captions_name_the_class_for_glide_and_loosely_for_clip():
    import random

    rng = random.Random(0)
    assert all("sandal" in glide_caption("sandal", rng) for _ in range(50))
    words = [clip_caption(2, rng) for _ in range(2000)]  # pullover
    assert not any("pullover" in w for w in words)
    assert sum("sweater" in w for w in words) > 0.5 * len(words)
    assert all(abs(sum(naming.values()) - 1) < 1e-9 for naming in CLIP_NAMING.values())


@pytest.mark.parametrize("kind", ["base", "upsample"])
@pytest.mark.slow
def test_glide_training_loss_falls_and_is_seeded(kind, pool, tokenizer, tmp_path):
    settings = TrainSettings(steps=40, batch_size=16, lr=1e-3, warmup=5, log_every=5, checkpoint_every=1000)
    _, log = train_glide_model(kind, pool, tokenizer, settings, tmp_path / "a")
    # the noise-prediction term falls; the bound term (variance) is in the loss, spiky at step 0 draws
    assert len(log.losses) == 8 and falls(log.mse), log.mse
    assert np.allclose(log.losses, np.add(log.mse, log.vb), atol=1e-4) and max(log.vb) > 0
    again = TrainSettings(steps=5, batch_size=16, lr=1e-3, warmup=5, log_every=5, checkpoint_every=1000)
    _, repeat = train_glide_model(kind, pool, tokenizer, again, tmp_path / "b")
    assert repeat.losses[0] == log.losses[0]


@pytest.mark.slow
def test_glide_training_continues_from_its_checkpoint(pool, tokenizer, tmp_path):
    first = TrainSettings(steps=4, batch_size=8, warmup=2, log_every=2, checkpoint_every=2)
    _, log = train_glide_model("base", pool, tokenizer, first, tmp_path)
    assert json.loads((tmp_path / "base-ckpt" / "latest.json").read_text())["step"] == 4
    _, longer = train_glide_model(
        "base",
        pool,
        tokenizer,
        TrainSettings(steps=6, batch_size=8, warmup=2, log_every=2, checkpoint_every=2),
        tmp_path,
    )
    assert longer.steps == [2, 4, 6] and longer.losses[:2] == log.losses


@pytest.mark.slow
def test_clip_training_loss_falls(pool):
    model, log = train_clip(pool, ClipTraining(epochs=6, batch_size=64, lr=3e-3, warmup=20, log_every=15))
    assert log.losses[0] > 4 and log.losses[-1] < log.losses[0] - 0.5, log.losses  # from ln(64): chance
    assert model.visual.image_size == (32, 32)


@pytest.mark.slow
def test_judge_training_loss_falls_and_is_seeded(pool):
    settings = JudgeTraining(epochs=3, batch_size=64)
    _, losses = train_judge(pool, settings)
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0], losses
    assert train_judge(pool, settings, steps=3)[1] == train_judge(pool, settings, steps=3)[1]
