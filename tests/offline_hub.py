"""A Hugging Face hub cache, built offline, holding what the shipped configs name under the real
repository ids and file names: what `from_pretrained`, `hf_hub_download` and open_clip's `pretrained=`
tags find on a machine that downloaded them. Weights are random: open_clip's RN50 for the `openai` tag
is architecture-exact (what open_clip builds for `RN50` must load it); the seq2seq, diffusers and
instruct models are small stand-ins of the same classes, since only their loading path is rehearsed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.helpers import hub_cache_snapshot

OPENAI_RN50 = "timm/resnet50_clip.openai"  # open_clip's hf_hub for RN50 / openai
SENTENCE_MODEL = "mrm8488/t5-base-finetuned-common_gen"
STABLE_DIFFUSION = "stable-diffusion-v1-5/stable-diffusion-v1-5"
INSTRUCT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def rn50_openai_weights() -> bytes:
    """open_clip's RN50 with random weights, as `open_clip_model.safetensors` (float16: half the bytes;
    open_clip copies them into its float32 model)."""
    import open_clip
    import torch
    from safetensors.torch import save

    torch.manual_seed(0)
    model = open_clip.create_model("RN50", force_quick_gelu=True)
    return save({key: value.half().contiguous() for key, value in model.state_dict().items()})


def saved(save) -> dict[str, bytes]:
    """The files `save(folder)` writes (a `save_pretrained`), read back."""
    with tempfile.TemporaryDirectory() as folder:
        save(Path(folder))
        return folder_files(Path(folder))


def build_offline_hub(cache: Path) -> dict[str, str]:
    """Write every repository into `cache` (an `HF_HUB_CACHE`); returns repository id -> commit."""
    from synthvision.models.generators.tiny import build_tiny_pipeline
    from synthvision.models.instruct import build_tiny_instruct_model
    from synthvision.models.sentences import build_tiny_sentence_model

    def pair(build):
        def save(folder: Path) -> None:
            model, tokenizer = build()
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)

        return save

    repos = {
        OPENAI_RN50: {"open_clip_model.safetensors": rn50_openai_weights()},
        SENTENCE_MODEL: saved(pair(build_tiny_sentence_model)),
        STABLE_DIFFUSION: saved(lambda folder: build_tiny_pipeline().save_pretrained(folder)),
        INSTRUCT_MODEL: saved(pair(build_tiny_instruct_model)),
    }
    return {repo_id: hub_cache_snapshot(cache, repo_id, files) for repo_id, files in repos.items()}
