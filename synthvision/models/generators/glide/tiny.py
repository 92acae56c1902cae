"""A tiny GLIDE (few channels, one transformer layer, a byte-level vocabulary) built from config with
random weights: for tests, the offline demo and benchmarks, on CPU in seconds. Saved with
`save_glide_folder`, it is loaded back through the same code path as the released checkpoints."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from transformers.convert_slow_tokenizer import bytes_to_unicode

from synthvision.models.generators.glide.model import GlideArchitecture, GlideUNet
from synthvision.models.generators.glide.tokenizer import MERGES_FILE, VOCAB_FILE, GlideTokenizer

ARCHITECTURE_FILE = "glide.json"  # only for non-released architectures; absent: the released GLIDE
_TINY_MERGES = [("Ġ", "a"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("o", "f"), ("Ġ", "o"), ("Ġo", "f"), ("r", "e")]


def tiny_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's 256 byte symbols, a few merges and `<|endoftext|>` last, as in the real vocabulary."""
    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    for first, second in _TINY_MERGES:
        vocab[first + second] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, list(_TINY_MERGES)


def tiny_architectures(n_vocab: int) -> tuple[GlideArchitecture, GlideArchitecture]:
    """A 16 px base and a 16 -> 64 px upsampler with GLIDE's structure and 32 channels."""
    text = dict(
        text_ctx=16,
        xf_width=32,
        xf_layers=1,
        xf_heads=2,
        n_vocab=n_vocab,
        num_channels=32,
        num_head_channels=16,
        dropout=0.0,
    )
    base = GlideArchitecture(image_size=16, num_res_blocks=1, channel_mult=(1, 1), attention_resolutions=(8,), **text)
    upsampler = GlideArchitecture(
        image_size=64,
        num_res_blocks=1,
        channel_mult=(1, 1, 1, 1),
        attention_resolutions=(8,),
        super_res=True,
        noise_schedule="linear",
        **text,
    )
    return base, upsampler


def random_glide(arch: GlideArchitecture, seed: int) -> GlideUNet:
    """A model with random weights (the embeddings GLIDE leaves uninitialised get N(0, 0.02))."""
    torch.manual_seed(seed)
    model = GlideUNet(arch)
    for parameter in (model.positional_embedding, model.padding_embedding):
        torch.nn.init.normal_(parameter, std=0.02)
    return model.eval()


def build_tiny_glide(seed: int = 0) -> tuple[GlideUNet, GlideUNet, GlideTokenizer]:
    vocab, merges = tiny_vocabulary()
    base, upsampler = tiny_architectures(len(vocab))
    return random_glide(base, seed), random_glide(upsampler, seed + 1), GlideTokenizer(vocab, merges)


def save_glide_folder(
    folder: str | Path, base: GlideUNet, upsampler: GlideUNet, vocab: dict[str, int], merges: list[tuple[str, str]]
) -> None:
    """Write a weights folder laid out like a released one (base.pt, upsample.pt, tokenizer files),
    plus `glide.json` naming the architectures, which the released folder does without."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(base.state_dict(), folder / "base.pt")
    torch.save(upsampler.state_dict(), folder / "upsample.pt")
    (folder / VOCAB_FILE).write_text(json.dumps(vocab))
    (folder / MERGES_FILE).write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (folder / ARCHITECTURE_FILE).write_text(
        json.dumps({"base": asdict(base.arch), "upsample": asdict(upsampler.arch)}, indent=1)
    )
