"""Training the toy GLIDE pair as GLIDE was trained, at toy size, on Fashion-MNIST's train split.

- **Models**: synthvision's own GLIDE architecture (`generators/glide/model.py`, the released module
  tree): a text-conditional 16 px base (cosine schedule) and a text-conditional 16 -> 32 px upsampler
  (linear schedule), both predicting the noise and the variance interpolation v.
- **Objective**: the hybrid loss of improved DDPM that GLIDE used, L_simple (noise MSE) plus the
  variational bound term that trains the variance (`SpacedDiffusion.training_losses`), steps drawn
  uniformly from the 1,000.
- **Text**: captions that name the class in varied templates and sentences (`captions.py`), dropped
  to the empty caption 20% of the time so classifier-free guidance works, tokenised by a byte-level
  BPE trained on those captions with `tokenizers` and written in GPT-2's `encoder.json` / `vocab.bpe`
  format, the files the backend reads for the released models.
- **Weights**: an exponential moving average of the parameters (what improved DDPM and GLIDE sample
  from), saved as `base.safetensors` / `upsample.safetensors` in float16, with `glide.json` naming
  the architecture: the folder loads through `load_glide_models`, the released checkpoints' path.

A run checkpoints itself (pickle-free, `pretraining.checkpoint`) and continues where it stopped.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from synthvision.core.respacing import BASE_STEPS
from synthvision.datasets.fashion_mnist import CLASSES, Split
from synthvision.methods.pretraining.checkpoint import Checkpointer
from synthvision.models.generators.glide.diffusion import SpacedDiffusion
from synthvision.models.generators.glide.model import GlideArchitecture, GlideUNet
from synthvision.models.generators.glide.tiny import ARCHITECTURE_FILE, random_glide
from synthvision.models.generators.glide.tokenizer import MERGES_FILE, VOCAB_FILE, GlideTokenizer
from synthvision.storage.store import Storage
from synthvision.toy.captions import caption_corpus, glide_caption

BASE_SIZE, UPSAMPLED_SIZE = 16, 32
CAPTION_DROP = 0.2  # GLIDE: 20% of captions replaced by the empty one, for classifier-free guidance
END_OF_TEXT = "<|endoftext|>"
TOKENIZER_VOCAB = 512
_TEXT = dict(text_ctx=24, xf_width=128, xf_layers=2, xf_heads=4, num_head_channels=32, dropout=0.0)


def toy_architectures(n_vocab: int) -> dict[str, GlideArchitecture]:
    """The toy pair: GLIDE's structure (text transformer, attention over text tokens, scale-shift
    res blocks) with 32 channels, at 16 px and 16 -> 32 px."""
    return {
        "base": GlideArchitecture(
            image_size=BASE_SIZE,
            num_channels=32,
            num_res_blocks=2,
            channel_mult=(1, 2, 2),
            attention_resolutions=(8, 4),
            n_vocab=n_vocab,
            **_TEXT,
        ),
        "upsample": GlideArchitecture(
            image_size=UPSAMPLED_SIZE,
            num_channels=32,
            num_res_blocks=1,
            channel_mult=(1, 1, 2),
            attention_resolutions=(8,),
            super_res=True,
            noise_schedule="linear",
            n_vocab=n_vocab,
            **_TEXT,
        ),
    }


def train_tokenizer(
    texts: list[str], vocab_size: int = TOKENIZER_VOCAB
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE (GPT-2's pre-tokenisation and byte alphabet) trained on `texts` with
    `tokenizers`; returns GPT-2's vocabulary and merges, `<|endoftext|>` last as in GPT-2's files."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [text.lower() for text in texts], vocab_size=vocab_size - 1, min_frequency=2, show_progress=False
    )
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda item: item[1]))
    vocab[END_OF_TEXT] = len(vocab)
    merges = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]]
    return vocab, merges


def write_tokenizer(folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """GPT-2's file format: `encoder.json` (token -> id) and `vocab.bpe` (a version line, then one
    merge per line in priority order)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / MERGES_FILE).write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """Grey 28 px images as N x 3 x size x size uint8 (bicubic, as the backend resizes references)."""
    out = np.stack(
        [
            np.asarray(Image.fromarray(image).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
            for image in images
        ]
    )
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def to_model_range(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float() / 127.5 - 1


@dataclass
class TrainSettings:
    steps: int = 6000
    batch_size: int = 128
    lr: float = 3e-4
    warmup: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    bf16: bool = True  # autocast on CPU (2x faster with AVX-512 bf16); the weights stay float32


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # mean hybrid loss over the last log_every steps
    mse: list[float] = field(default_factory=list)
    vb: list[float] = field(default_factory=list)
    seconds: float = 0.0


class CaptionTokens:
    """Token ids and masks per caption, tokenised once (the caption forms are few)."""

    def __init__(self, tokenizer: GlideTokenizer, text_ctx: int):
        self.tokenizer, self.text_ctx = tokenizer, text_ctx
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        for caption in set(captions) - set(self._cache):
            tokens, mask = self.tokenizer.batch([caption], self.text_ctx)
            self._cache[caption] = (tokens[0], mask[0])
        return torch.stack([self._cache[c][0] for c in captions]), torch.stack([self._cache[c][1] for c in captions])


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for target, source in zip(ema.parameters(), model.parameters(), strict=True):
            target.lerp_(source, 1 - decay)


def train_glide_model(
    kind: str,
    split: Split,
    tokenizer: GlideTokenizer,
    settings: TrainSettings,
    work_dir: Path,
    on_log: Callable[[int, float], None] | None = None,
) -> tuple[GlideUNet, TrainLog]:
    """Train the toy `kind` ("base" or "upsample") on `split`; returns the EMA model and the loss log.

    Checkpoints go to `work_dir` every `checkpoint_every` steps; a rerun continues from the latest."""
    arch = toy_architectures(tokenizer.n_vocab)[kind]
    torch.manual_seed(settings.seed)
    model = random_glide(arch, settings.seed).train()
    ema = random_glide(arch, settings.seed).eval()
    ema.load_state_dict(model.state_dict())
    pair = torch.nn.ModuleDict({"model": model, "ema": ema})
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    # a checkpoint of the same settings but fewer steps is continued: training can be extended
    resumable = {k: v for k, v in asdict(settings).items() if k not in ("steps", "checkpoint_every", "log_every")}
    checkpointer = Checkpointer(Storage(str(work_dir)), f"{kind}-ckpt", json.dumps(resumable, sort_keys=True))
    counters = checkpointer.restore(pair, optimizer) or {"step": 0, "log": asdict(TrainLog())}
    log = TrainLog(**counters["log"])

    diffusion = SpacedDiffusion(arch.noise_schedule, str(BASE_STEPS))
    low = resized(split.images, BASE_SIZE)
    high = resized(split.images, UPSAMPLED_SIZE) if arch.super_res else None
    tokens_of = CaptionTokens(tokenizer, arch.text_ctx)
    window: list[tuple[float, float, float]] = []
    started = time.perf_counter()
    for step in range(counters["step"], settings.steps):
        rng = random.Random(settings.seed * 1_000_003 + step)  # the batch of step s is fixed by (seed, s)
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
        index = torch.randint(len(split.labels), (settings.batch_size,), generator=generator)
        captions = [
            "" if rng.random() < CAPTION_DROP else glide_caption(CLASSES[int(split.labels[i])], rng) for i in index
        ]
        tokens, mask = tokens_of(captions)
        x_start = to_model_range(high[index] if high is not None else low[index])
        low_res = to_model_range(low[index]) if high is not None else None
        t = torch.randint(BASE_STEPS, (settings.batch_size,), generator=generator)
        noise = torch.randn(x_start.shape, generator=generator)
        x_t = diffusion.q_sample(x_start, t, noise)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            output = model(x_t, t, tokens, mask, low_res=low_res)
        losses = diffusion.training_losses(output.float(), x_start, x_t, t, noise)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / settings.warmup)
        optimizer.zero_grad(set_to_none=True)
        losses.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        _ema_update(ema, model, min(settings.ema_decay, (1 + step) / (10 + step)))
        window.append((losses.loss.item(), losses.mse.mean().item(), losses.vb.mean().item()))
        if (step + 1) % settings.log_every == 0:
            means = np.mean(window, axis=0)
            log.steps.append(step + 1)
            log.losses.append(round(float(means[0]), 5))
            log.mse.append(round(float(means[1]), 5))
            log.vb.append(round(float(means[2]), 5))
            window = []
            if on_log:
                on_log(step + 1, float(means[0]))
        if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
            log.seconds += time.perf_counter() - started
            started = time.perf_counter()
            checkpointer.save(step + 1, pair, optimizer, {"step": step + 1, "log": asdict(log)})
    return ema.eval(), log


def save_toy_glide(
    folder: Path, models: dict[str, GlideUNet], vocab: dict[str, int], merges: list[tuple[str, str]]
) -> None:
    """The released layout: base/upsample weights (safetensors, float16), tokenizer files, and
    `glide.json` naming the toy architectures."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, model in models.items():
        save_file(
            {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()},
            folder / f"{kind}.safetensors",
        )
    write_tokenizer(folder, vocab, merges)
    record = json.loads((folder / ARCHITECTURE_FILE).read_text()) if (folder / ARCHITECTURE_FILE).is_file() else {}
    record.update({kind: asdict(model.arch) for kind, model in models.items()})
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(record, indent=1))


def toy_tokenizer(seed: int = 0) -> tuple[dict[str, int], list[tuple[str, str]]]:
    return train_tokenizer(caption_corpus(seed))
