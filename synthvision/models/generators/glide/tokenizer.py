"""GLIDE's tokenizer: GPT-2's byte-level BPE (lower-cased text), padded to the model's context.

The released models use the vocabulary and merges shipped with openai/glide-text2im
(`glide_text2im/tokenizer/encoder.json.gz` and `vocab.bpe.gz`, the GPT-2 files: 50,257 tokens, the
last one `<|endoftext|>`, which also pads). transformers' GPT2Tokenizer implements that BPE; we give
it those two files from the weights folder, plain or gzipped.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from transformers import GPT2Tokenizer

from synthvision.core.errors import ModelLoadError

VOCAB_FILE = "encoder.json"
MERGES_FILE = "vocab.bpe"


def _read_text(folder: Path, name: str) -> str:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            data = candidate.read_bytes()
            return (gzip.decompress(data) if candidate.suffix == ".gz" else data).decode("utf-8")
    raise ModelLoadError(
        f"generator.model: {folder} has no {name} (or {name}.gz). Copy glide_text2im/tokenizer/{name}.gz "
        "from github.com/openai/glide-text2im into that folder."
    )


class GlideTokenizer:
    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self._bpe = GPT2Tokenizer(vocab=vocab, merges=merges)
        self.n_vocab = len(vocab)
        self.end_token = self.n_vocab - 1  # <|endoftext|>: ends and pads every prompt

    @classmethod
    def from_folder(cls, folder: str | Path) -> GlideTokenizer:
        folder = Path(folder)
        vocab = json.loads(_read_text(folder, VOCAB_FILE))
        # the merges file starts with a "#version" line and ends with a newline
        merges = [tuple(line.split()) for line in _read_text(folder, MERGES_FILE).split("\n")[1:] if line.strip()]
        return cls(vocab, merges)

    def encode(self, text: str) -> list[int]:
        """BPE ids of the lower-cased text. Text that looks like a special token (`<|endoftext|>`) is
        encoded as the characters it is, as GLIDE's own BPE does: a prompt cannot end itself early."""
        return self._bpe.encode(text.lower(), add_special_tokens=False, split_special_tokens=True)

    def batch(self, prompts: list[str], text_ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (N x text_ctx), cut or padded with the end token, and the mask of real tokens."""
        tokens, mask = [], []
        for prompt in prompts:
            ids = self.encode(prompt)[:text_ctx]
            padding = text_ctx - len(ids)
            tokens.append(ids + [self.end_token] * padding)
            mask.append([True] * len(ids) + [False] * padding)
        return torch.tensor(tokens, dtype=torch.long), torch.tensor(mask, dtype=torch.bool)
