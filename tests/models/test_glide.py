"""The GLIDE backend on tiny random weights, and the released architectures' module trees (built on
the meta device, no weights) against the checkpoints' published sizes and key names."""

from __future__ import annotations

import gzip
import json
import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from synthvision.core.data_config import GeneratorConfig
from synthvision.core.errors import ModelLoadError
from synthvision.core.respacing import respaced_steps
from synthvision.models.generators.glide.backend import GlideGenerator, GlideModels, guided_output, load_glide_models
from synthvision.models.generators.glide.diffusion import (
    SpacedDiffusion,
    beta_schedule,
    discretized_gaussian_log_likelihood,
    normal_kl,
)
from synthvision.models.generators.glide.model import RELEASED_BASE, RELEASED_UPSAMPLER, GlideUNet
from synthvision.models.generators.glide.tiny import build_tiny_glide, save_glide_folder, tiny_vocabulary
from synthvision.models.generators.glide.tokenizer import GlideTokenizer
from synthvision.stages.units import ensure

FAST = {"base_respacing": "6", "upsample_respacing": "3"}


def glide_config(upsample: bool = True, **changes) -> GeneratorConfig:
    fields = {
        "backend": "glide",
        "model": "tiny",
        "resolution": 64 if upsample else 16,
        "glide": {**FAST, "upsample": upsample},
    }
    return GeneratorConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def tiny_models() -> GlideModels:
    return GlideModels(*build_tiny_glide())


def generator(models: GlideModels, **changes) -> GlideGenerator:
    return GlideGenerator(models, glide_config(**changes))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# -- the released checkpoints' layout ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "parameters", "shapes"),
    [
        (
            RELEASED_BASE,
            385_030_726,  # "total base parameters" printed by glide-text2im's text2im notebook
            {
                "token_embedding.weight": (50257, 512),
                "positional_embedding": (128, 512),
                "padding_embedding": (128, 512),
                "transformer.resblocks.15.attn.c_qkv.weight": (1536, 512),
                "transformer.resblocks.15.mlp.c_fc.weight": (2048, 512),
                "final_ln.weight": (512,),
                "transformer_proj.weight": (768, 512),
                "time_embed.2.weight": (768, 768),
                "input_blocks.0.0.weight": (192, 3, 3, 3),
                "input_blocks.4.0.emb_layers.1.weight": (384, 768),  # the first downsampling res block
                "input_blocks.5.1.qkv.weight": (1152, 384, 1),  # attention from 32 px down
                "input_blocks.5.1.encoder_kv.weight": (768, 512, 1),
                "middle_block.1.encoder_kv.weight": (1536, 512, 1),
                "output_blocks.11.2.in_layers.2.weight": (384, 384, 3, 3),  # the last upsampling res block
                "out.2.weight": (6, 192, 3, 3),
            },
        ),
        (
            RELEASED_UPSAMPLER,
            398_361_286,  # "total upsampler parameters", same notebook
            {
                "input_blocks.0.0.weight": (192, 6, 3, 3),
                "out.2.weight": (6, 192, 3, 3),
                "middle_block.1.qkv.weight": (2304, 768, 1),
            },
        ),
    ],
    ids=["base.pt", "upsample.pt"],
)
def test_released_module_trees_match_the_checkpoints(arch, parameters, shapes):
    with torch.device("meta"):
        state = GlideUNet(arch).state_dict()
    assert sum(tensor.numel() for tensor in state.values()) == parameters
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    blocks = len(arch.channel_mult) * (arch.num_res_blocks + 1)  # per level: res blocks + a resampler / extra res block
    assert {int(key.split(".")[1]) for key in state if key.startswith(("input_blocks.", "output_blocks."))} == set(
        range(blocks)
    )


def test_tiny_weights_round_trip_through_a_folder_like_the_released_one(tmp_path, tiny_models):
    vocab, merges = tiny_vocabulary()
    save_glide_folder(tmp_path, tiny_models.base, tiny_models.upsampler, vocab, merges)
    for name in ("encoder.json", "vocab.bpe"):  # glide-text2im ships the tokenizer files gzipped
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress((tmp_path / name).read_bytes()))
        (tmp_path / name).unlink()
    loaded = load_glide_models(str(tmp_path))
    for mine, theirs in ((tiny_models.base, loaded.base), (tiny_models.upsampler, loaded.upsampler)):
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(mine.state_dict()[k], theirs.state_dict()[k]) for k in mine.state_dict())
    config = glide_config()
    images = [GlideGenerator(models, config).generate(["a red apple"], [3])[0] for models in (tiny_models, loaded)]
    assert np.array_equal(pixels(images[0]), pixels(images[1]))


def test_missing_or_unsafe_weights_are_clear_errors(tmp_path, tiny_models):
    with pytest.raises(ModelLoadError, match="generator.model: .*is not a folder.*base.pt"):
        load_glide_models(str(tmp_path / "nowhere"))
    vocab, merges = tiny_vocabulary()
    save_glide_folder(tmp_path, tiny_models.base, tiny_models.upsampler, vocab, merges)
    (tmp_path / "upsample.pt").unlink()
    with pytest.raises(ModelLoadError, match="has no upsample.pt. Download https://openaipublic.*/upsample.pt"):
        load_glide_models(str(tmp_path))

    class Payload:  # a pickle that would run code when unpickled without weights_only
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "upsample.pt").write_bytes(pickle.dumps({"w": Payload()}, protocol=2))
    with pytest.raises(ModelLoadError, match="upsample.pt is not a tensors-only state dict"):
        load_glide_models(str(tmp_path))
    torch.save(tiny_models.base.state_dict(), tmp_path / "upsample.pt")  # the base where the upsampler belongs
    with pytest.raises(ModelLoadError, match="upsample: .*not a GLIDE upsampler checkpoint|upsample: .*size mismatch"):
        load_glide_models(str(tmp_path))
    (tmp_path / "vocab.bpe").unlink()
    with pytest.raises(ModelLoadError, match="has no vocab.bpe .*glide-text2im"):
        load_glide_models(str(tmp_path))


# -- tokenizer ---------------------------------------------------------------------------------------
def test_tokenizer_lowercases_pads_with_the_end_token_and_masks():
    tokenizer = GlideTokenizer(*tiny_vocabulary())
    vocab, _ = tiny_vocabulary()
    # "A" is lower-cased; " the": Ġ+t, h+e, then Ġt+he; " of": o+f ranks before Ġ+o, so Ġ stays alone
    assert tokenizer.encode("A the of") == [vocab["a"], vocab["Ġthe"], vocab["Ġ"], vocab["of"]]
    tokens, mask = tokenizer.batch(["A the", "x" * 10], text_ctx=5)
    end = len(vocab) - 1
    assert tokens.tolist() == [[vocab["a"], vocab["Ġthe"], end, end, end], [vocab["x"]] * 5]
    assert mask.tolist() == [[True, True, False, False, False], [True] * 5]


def test_text_that_looks_like_the_end_token_is_encoded_as_text():
    tokenizer = GlideTokenizer(*tiny_vocabulary())
    vocab, _ = tiny_vocabulary()
    ids = tokenizer.encode("a <|endoftext|>")
    assert tokenizer.end_token not in ids and len(ids) > 3  # the characters, byte-level, never the special token
    assert ids[:2] == [vocab["a"], vocab["Ġ"]] and ids[2] == vocab["<"]


# -- diffusion ---------------------------------------------------------------------------------------
def running_sum_steps(count: int, steps: int = 1000) -> list[int]:
    """One section of `count` steps by the running-sum rule, written out for the test."""
    stride, position, kept = (steps - 1) / (count - 1) if count > 1 else 1, 0.0, []
    for _ in range(count):
        kept.append(round(position))
        position += stride
    return kept


def test_respacing_keeps_the_documented_steps():
    assert respaced_steps("ddim50") == list(range(0, 1000, 20))
    assert respaced_steps("10", 100) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]  # stride 99 / 9 = 11
    hundred = respaced_steps("100")  # stride 999 / 99 = 10.09: 6 x 10.09 = 60.5 rounds to 61
    assert (len(hundred), hundred[:8], hundred[-1]) == (100, [0, 10, 20, 30, 40, 50, 61, 71], 999)
    assert respaced_steps("fast27") == [
        0,
        22,
        44,
        66,
        88,
        111,
        133,
        155,
        177,
        199,  # 10 of 0..199 (stride 22.1)
        200,
        222,
        244,
        266,
        288,
        311,
        333,
        355,
        377,
        399,  # 10 of 200..399
        400,
        500,
        599,  # 3 of 400..599 (stride 99.5, half to even: 100)
        600,
        799,
        800,  # 2 + 2, with the noisiest step 999 moved to 997
        997,
    ]
    # the stride accumulates in a running position, as improved-diffusion's `space_timesteps` does:
    # for 21 steps 10 x 49.95 sums to 499.49999999999994 (kept: 499), where 10 * 49.95 gives 499.5 (500)
    assert respaced_steps("21")[9:12] == [450, 499, 549]
    for count in range(1, 1001):
        assert respaced_steps(str(count)) == running_sum_steps(count), count
    for bad in ("0", "300,300,300,300", "ddim999", "fast"):
        with pytest.raises(ValueError, match="respacing"):
            respaced_steps(bad)


def test_schedules_and_respaced_process():
    linear = beta_schedule("linear")
    assert (linear[0], linear[-1]) == pytest.approx((1e-4, 0.02))
    cosine = beta_schedule("squaredcos_cap_v2")
    assert cosine[0] == pytest.approx(4.1284e-5, rel=1e-4) and cosine[-1] == 0.999  # 1 - abar(1/T)/abar(0); capped
    spaced = SpacedDiffusion("squaredcos_cap_v2", "10")
    base = np.cumprod(1 - cosine)
    assert np.allclose(spaced._table["alphas_cumprod"].numpy(), base[spaced.steps])
    assert spaced.model_timesteps(9, 2, torch.device("cpu")).tolist() == [999, 999]


# -- the training objective (the toy GLIDE is trained with it) ----------------------------------------
def test_gaussian_kl_and_discretised_likelihood_by_hand():
    zero, ln4 = torch.tensor(0.0), torch.tensor(math.log(4.0))
    assert normal_kl(zero, zero, zero, zero) == 0
    # KL(N(0, 1) || N(1, 4)) = 0.5 (ln 4 + 1/4 + 1/4 - 1)
    assert normal_kl(zero, zero, torch.tensor(1.0), ln4).item() == pytest.approx(0.5 * (math.log(4) - 0.5))
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    x = torch.tensor([0.0, -1.0, 1.0])
    log_p = discretized_gaussian_log_likelihood(x, torch.tensor([0.0, -1.0, 0.5]), torch.zeros(3))
    expected = [
        math.log(phi(1 / 255) - phi(-1 / 255)),
        math.log(phi(1 / 255)),
        math.log(1 - phi(0.5 - 1 / 255)),
    ]  # middle bin; both open end bins
    assert log_p.tolist() == pytest.approx(expected, rel=1e-5)


def test_a_perfect_model_has_zero_training_loss_except_the_decoder_term():
    diffusion = SpacedDiffusion("linear", "50")
    generator = torch.Generator().manual_seed(0)
    x_start = torch.rand(4, 3, 4, 4, generator=generator) * 2 - 1
    noise = torch.randn(4, 3, 4, 4, generator=generator)
    index = torch.tensor([0, 1, 25, 49])
    x_t = diffusion.q_sample(x_start, index, noise)
    # the true noise, and v = -1: the posterior's own variance (beta tilde)
    perfect = diffusion.training_losses(torch.cat([noise, -torch.ones_like(noise)], dim=1), x_start, x_t, index, noise)
    assert perfect.mse.abs().max() < 1e-6
    assert perfect.vb[1:].abs().max() < 1e-4 and perfect.vb[0] > 0  # step 0 is the decoder's NLL, never 0
    wrong = diffusion.training_losses(
        torch.cat([noise + 0.1, torch.ones_like(noise)], dim=1), x_start, x_t, index, noise
    )
    assert wrong.mse.tolist() == pytest.approx([0.01] * 4, rel=1e-4) and (wrong.vb[1:] > perfect.vb[1:] + 1e-5).all()
    assert wrong.loss == pytest.approx((wrong.mse + wrong.vb).mean().item())


# -- guidance and sampling ---------------------------------------------------------------------------
def test_guidance_combines_the_halves():
    cond, uncond = torch.full((1, 6, 2, 2), 3.0), torch.full((1, 6, 2, 2), 1.0)
    uncond[:, 3:] = -5.0
    out = guided_output(torch.cat([cond, uncond]), scale=3.0)
    assert torch.equal(out[:, :3], torch.full((1, 3, 2, 2), 7.0))  # 1 + 3 (3 - 1)
    assert torch.equal(out[:, 3:], cond[:, 3:])  # the conditional half's variance


def test_guidance_scale_one_is_the_conditional_model_alone(tiny_models):
    model, tokenizer = tiny_models.base, tiny_models.tokenizer
    x, t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([500, 20])
    cond = tokenizer.batch(["a red apple", "the sea"], model.arch.text_ctx)
    both = tokenizer.batch(["a red apple", "the sea", "", ""], model.arch.text_ctx)
    with torch.inference_mode():
        guided = guided_output(model(torch.cat([x, x]), torch.cat([t, t]), *both), scale=1.0)
        alone = model(x, t, *cond)
        assert not torch.allclose(
            guided_output(model(torch.cat([x, x]), torch.cat([t, t]), *both), scale=3.0), alone, atol=1e-4
        )
    assert torch.allclose(guided, alone, atol=1e-5)


def test_images_depend_on_seed_and_prompt_only(tiny_models):
    gen = generator(tiny_models)
    batch = gen.generate(["a red apple", "the sea", "a red apple"], [1, 2, 9])
    alone = gen.generate(["the sea"], [2])[0]
    assert [image.size for image in batch] == [(64, 64)] * 3
    # the same image, up to float rounding: a batch of 3 and a batch of 1 may sum in another order (on
    # one CPU thread, measured: 1 value of 12,288 off by one level), which can tip a pixel's rounding
    difference = np.abs(pixels(batch[1]) - pixels(alone))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001, (difference.max(), (difference > 0).sum())
    assert not np.array_equal(pixels(batch[0]), pixels(batch[2]))


def test_upsampler_consumes_the_base_output(tiny_models):
    base_only = generator(tiny_models, upsample=False).generate(["a red apple"], [4])[0]
    seen = {}

    def record(module, args, kwargs) -> None:
        seen.setdefault("low_res", kwargs["low_res"])

    hook = tiny_models.upsampler.register_forward_pre_hook(record, with_kwargs=True)
    try:
        final = generator(tiny_models).generate(["a red apple"], [4])[0]
    finally:
        hook.remove()
    assert base_only.size == (16, 16) and final.size == (64, 64)
    low_res = ((seen["low_res"][0] + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.array_equal(low_res, pixels(base_only))


def test_a_ddim_step_by_hand():
    diffusion = SpacedDiffusion("linear", "10")
    index, x = 6, torch.full((1, 3, 2, 2), 0.3)
    eps = torch.linspace(-1, 1, 12).reshape(1, 3, 2, 2)
    alpha_bar = math.prod(1 - b for b in beta_schedule("linear")[: diffusion.steps[index] + 1])
    alpha_bar_prev = math.prod(1 - b for b in beta_schedule("linear")[: diffusion.steps[index - 1] + 1])
    x_start = ((x - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)).clamp(-1, 1)
    prediction = diffusion.predict(torch.cat([eps, torch.zeros_like(eps)], dim=1), x, index)
    torch.testing.assert_close(prediction.pred_xstart, x_start)
    # eta 0: along the eps re-derived from the clipped x_0, to the previous kept step, no noise
    eps_clipped = (x - math.sqrt(alpha_bar) * x_start) / math.sqrt(1 - alpha_bar)
    expected = math.sqrt(alpha_bar_prev) * x_start + math.sqrt(1 - alpha_bar_prev) * eps_clipped
    no_noise = lambda: pytest.fail("DDIM with eta 0 draws no noise")  # noqa: E731
    torch.testing.assert_close(diffusion.ddim_step(x_start, x, index, 0.0, no_noise), expected)
    # eta 1: the DDPM posterior's standard deviation, times the noise drawn
    sigma = math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
    ones = torch.ones_like(x)
    noisy = math.sqrt(alpha_bar_prev) * x_start + math.sqrt(1 - alpha_bar_prev - sigma**2) * eps_clipped + sigma
    torch.testing.assert_close(diffusion.ddim_step(x_start, x, index, 1.0, lambda: ones), noisy)
    # at the last step x is the x_0 prediction itself
    torch.testing.assert_close(diffusion.ddim_step(x_start, x, 0), x_start)


def test_the_upsampler_runs_ddim_from_noise_scaled_by_0_997(tiny_models, monkeypatch):
    seen = {}
    real = SpacedDiffusion.ddim_sample

    def ddim_sample(self, model, x, noise, eta=0.0):
        seen.update(x=x.clone(), eta=eta)
        return real(self, model, x, noise, eta)

    monkeypatch.setattr(SpacedDiffusion, "ddim_sample", ddim_sample)
    glide = generator(tiny_models)
    glide.generate(["a red apple"], [4])
    draws = torch.Generator("cpu").manual_seed(4)
    torch.randn((3, 16, 16), generator=draws)  # the base's initial noise
    for _ in range(glide.base_diffusion.num_steps - 1):  # and one draw per ancestral base step but the last
        torch.randn((3, 16, 16), generator=draws)
    first = torch.randn((3, 64, 64), generator=draws)
    torch.testing.assert_close(seen["x"][0], first * 0.997)
    assert seen["eta"] == 0.0
    ancestral = generator(tiny_models, glide={**FAST, "upsample_sampler": "ancestral"}).generate(["a red apple"], [4])
    assert not np.array_equal(pixels(ancestral[0]), pixels(glide.generate(["a red apple"], [4])[0]))


def test_real_guidance_full_strength_is_text_to_image_and_small_strength_stays_near_the_reference(tiny_models):
    gen = generator(tiny_models, upsample=False)
    reference = Image.fromarray(np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))[..., None].repeat(3, axis=2))
    seeds, prompts = [5, 6], ["a red apple", "the sea"]
    text_only = gen.generate(prompts, seeds)
    full = gen.generate_guided(prompts, seeds, [reference, reference], strength=1.0)
    assert all(
        np.array_equal(pixels(a), pixels(b)) for a, b in zip(text_only, full, strict=True)
    )  # nothing of the reference leaks in

    def distance(images) -> float:
        return float(np.mean([np.abs(pixels(image) - pixels(reference)).mean() for image in images]))

    near, far = (
        gen.generate_guided(prompts, seeds, [reference] * 2, strength=s) for s in (1 / 6, 4 / 6)
    )  # steps 1 and 4 of 6
    assert distance(near) < 10 < distance(text_only)
    assert distance(near) < distance(far)
    with pytest.raises(ValueError, match="strength must be in \\(0, 1\\]"):
        gen.generate_guided(prompts, seeds, [reference] * 2, strength=1.5)


def test_bfloat16_runs_and_resolution_must_match(tiny_models):
    images = generator(tiny_models, dtype="bfloat16", upsample=False).generate(["a red apple"], [1])
    assert images[0].size == (16, 16)
    with pytest.raises(ModelLoadError, match="generator.resolution is 256, but this GLIDE makes 64 px images"):
        GlideGenerator(tiny_models, glide_config(resolution=256))


def test_a_run_configured_for_glide_writes_its_shards_with_it(make_config):
    from synthvision.run import Run
    from synthvision.storage.tars import decode_image, read_samples

    config = make_config(generator={"backend": "glide", "model": "tiny", "resolution": 64, "glide": FAST})
    run = Run(config)
    ensure(run, "prompts")
    manifest, generated = ensure(run, "generate", 0)
    assert generated and manifest.count == 4
    with run.storage.open(manifest.data_file) as stream:
        samples = list(read_samples(stream, manifest.data_file))
    assert [decode_image(s["png"]).size for s in samples] == [(64, 64)] * 4
    assert json.loads(samples[0]["json"])["generator"] == "glide:tiny"
