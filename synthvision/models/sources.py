"""The models a config fetches from the Hugging Face hub, and whether this machine has them.

A config names models by hub id (the LE sentence model, the llm strategy's instruct model, a diffusers
pipeline) or by an open_clip name and pretrained tag, which open_clip resolves to a file of a hub
repository (`RN50` / `openai`: `timm/resnet50_clip.openai`, `open_clip_model.safetensors`). GPU
compute nodes rarely reach the internet: `prefetch` puts these into the local cache (or a folder) on
a machine that does, and the same check runs before any work when a command opens a run, so a missing
model is one line naming its field, not a failure inside a task. Local folders, `tiny` and GLIDE's
weights folder (which no hub serves) are not hub models.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from synthvision.core.config import RunConfig
from synthvision.core.data_config import ClipConfig
from synthvision.core.paths import is_url, split_local_dir

# which stages load the model a field names
LOADED_BY = {
    "prompts.sentence_model.model": ("prompts",),
    "prompts.llm.model": ("prompts",),
    "generator.model": ("generate",),
    "clip.pretrained": ("score", "train", "fewshot", "quality"),
}
TRANSFORMERS_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "tokenizer*")


@dataclass(frozen=True)
class HubModel:
    field: str  # the config field that names it
    value: str  # as the config names it
    repo_id: str
    files: tuple[str, ...] = ()  # the files open_clip takes (empty: a snapshot, as from_pretrained takes)
    kind: str = "transformers"  # transformers, diffusers or open_clip: how to fetch it

    @property
    def description(self) -> str:
        files = f": {', '.join(self.files)}" if self.files else ""
        return f"{self.field}: {self.value}" + ("" if self.value == self.repo_id else f" ({self.repo_id}{files})")


def is_hub_id(value: str | None) -> bool:
    """Whether a field's value names a hub repository: not empty, `tiny`, a URL, a `local-dir:` folder,
    an absolute path or a file or folder that exists here (the config made local paths absolute)."""
    if not value or value == "tiny" or is_url(value) or split_local_dir(value)[0]:
        return False
    return not Path(value).expanduser().is_absolute() and not Path(value).exists()


def hub_models(config: RunConfig, stages: tuple[str, ...] | None = None) -> list[HubModel]:
    """The hub models `stages` of `config` load (None: every stage the config can run)."""
    found: list[HubModel] = []
    prompts, generator, sentences = config.prompts, config.generator, config.prompts.sentence_model.model
    if prompts.strategy == "language_enhancement" and is_hub_id(sentences):
        found.append(HubModel("prompts.sentence_model.model", sentences, sentences))
    if prompts.strategy == "llm" and is_hub_id(prompts.llm.model):
        files = (prompts.llm.gguf_file,) if prompts.llm.gguf_file else ()
        found.append(HubModel("prompts.llm.model", prompts.llm.model, prompts.llm.model, files))
    if generator.backend == "diffusers" and is_hub_id(generator.model):
        found.append(HubModel("generator.model", generator.model, generator.model, kind="diffusers"))
    clip = open_clip_hub_model(config.clip)
    found += [clip] if clip else []
    if stages is None:
        return found
    return [model for model in found if set(LOADED_BY[model.field]) & set(stages)]


def open_clip_hub_model(clip: ClipConfig) -> HubModel | None:
    """The hub file open_clip loads for `clip.model` + a pretrained tag, or None (no tag, a file, or a
    tag open_clip downloads from a URL, which its own cache handles)."""
    if clip.pretrained is None or not is_hub_id(clip.pretrained):
        return None
    import open_clip

    source = open_clip.get_pretrained_cfg(clip.model, clip.pretrained).get("hf_hub", "")
    if not source:
        return None
    repo_id, filename = posixpath.split(source)  # as open_clip reads it: 'org/name/' or 'org/name/file'
    files = (filename,) if filename else ("open_clip_model.safetensors",)
    return HubModel("clip.pretrained", clip.pretrained, repo_id, files, kind="open_clip")


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of `repo_id`'s snapshot in the local Hugging Face cache (its name is the commit), or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None


def cached_path(model: HubModel) -> Path | None:
    """Where the local Hugging Face cache holds the model (its file, or its snapshot folder), or None:
    what loading it offline needs."""
    from huggingface_hub import try_to_load_from_cache

    if model.files:
        paths = [try_to_load_from_cache(model.repo_id, name) for name in model.files]
        if not all(isinstance(path, str) for path in paths):
            return None
        return Path(paths[0]) if len(paths) == 1 else Path(paths[0]).parent
    return cached_snapshot(model.repo_id)


def missing_models(config: RunConfig, stages: tuple[str, ...] | None) -> list[HubModel]:
    """The hub models `stages` need that this machine cannot load: not cached, and the hub unreachable
    (HF_HUB_OFFLINE, or no answer)."""
    from huggingface_hub import constants

    missing = [model for model in hub_models(config, stages) if cached_path(model) is None]
    if not missing or constants.HF_HUB_OFFLINE:
        return missing
    return [model for model in missing if not _reachable(model.repo_id)]


def _reachable(repo_id: str) -> bool:
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo_id, timeout=10)
    except Exception:  # no route, DNS, a proxy's refusal, a timeout: all mean the run could not fetch it
        return False
    return True


def fetch(model: HubModel) -> Path:
    """Download `model` into the local Hugging Face cache; returns its file (one open_clip file) or
    snapshot folder there."""
    from huggingface_hub import hf_hub_download, snapshot_download

    if model.files:
        paths = [Path(hf_hub_download(model.repo_id, name)) for name in model.files]
        return paths[0] if len(paths) == 1 else paths[0].parent
    if model.kind == "diffusers":
        from diffusers import DiffusionPipeline

        return Path(DiffusionPipeline.download(model.repo_id))
    return Path(snapshot_download(model.repo_id, allow_patterns=_patterns(model)))


def export(model: HubModel, path: Path, folder: Path) -> Path:
    """A copy of a fetched model (its cache file or snapshot, links followed) in `folder`/<repo>, for
    clusters that share a folder rather than a cache; returns what the config's field then names."""
    import shutil

    target = folder / model.repo_id.replace("/", "--")
    if path.is_file():
        target.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(path, target / path.name))
    shutil.copytree(path, target, dirs_exist_ok=True)
    return target


def _patterns(model: HubModel) -> list[str] | None:
    """The files from_pretrained reads: configs, tokenizers, safetensors weights (PyTorch .bin files
    only for repositories that have no safetensors)."""
    if model.kind != "transformers":
        return None
    from huggingface_hub import list_repo_files

    names = list_repo_files(model.repo_id)
    has_safetensors = any(name.endswith(".safetensors") for name in names)
    return [*TRANSFORMERS_FILES, *(() if has_safetensors else ("*.bin",))]


def size_of(path: Path) -> int:
    """Bytes under `path` (a file or folder), following the cache's links to its blobs."""
    if path.is_file():
        return path.stat().st_size
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def glide_folder_problem(config: RunConfig) -> str | None:
    """What a GLIDE weights folder lacks (no hub serves GLIDE: a user puts its files there), or None."""
    from synthvision.models.generators.glide.backend import missing_glide_files

    generator = config.generator
    if generator.backend != "glide" or generator.model == "tiny":
        return None
    missing = missing_glide_files(Path(generator.model).expanduser())
    return f"generator.model: {generator.model} lacks {', '.join(missing)} (README: GLIDE)" if missing else None


def preflight(config: RunConfig, stages: tuple[str, ...]) -> list[str]:
    """One line per model `stages` load that this machine lacks and cannot fetch, before any work."""
    lines = [f"{model.description}: not in the Hugging Face cache" for model in missing_models(config, stages)]
    glide = glide_folder_problem(config) if "generate" in stages else None
    return lines + ([glide] if glide else [])
