"""A tiny Stable-Diffusion-shaped pipeline built from config, for offline runs and tests.

It is a real `diffusers.StableDiffusionPipeline` (UNet, VAE, CLIP text encoder, DDIM scheduler) with
a few thousand random weights, in the manner of diffusers' own `get_dummy_components()`. Its images
are noise, but every line of the diffusers backend runs on it exactly as on real weights, and
`save_pretrained` writes a folder that loads back through the hub-id code path.

The tokenizer is character-level, built here rather than downloaded, since no CLIP vocabulary can be
fetched offline.
"""

from __future__ import annotations

import string

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TEXT_WIDTH = 32
MAX_TOKENS = 32


def char_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the printable ASCII characters (and their end-of-word forms)."""
    chars = [c for c in string.printable if not c.isspace()]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in chars:
            vocab[char + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = MAX_TOKENS
    return tokenizer


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """Random tiny pipeline; the same `seed` gives the same weights on every machine."""
    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=TEXT_WIDTH,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=MAX_TOKENS,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
