"""How a run names the models it used in what it writes (each sample's JSON, each manifest), the same
on every machine: a hub id by its id and the commit the local Hugging Face cache holds of it; a local
file or folder by its path relative to the config's folder and a digest of its bytes; a built-in name
(`tiny`, an open_clip model name, a pretrained tag) as it is. Never a machine's absolute path: a
dataset published from an output names no stranger's home folder, and two machines write the same.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from synthvision.core.data_config import ClipConfig, GeneratorConfig
from synthvision.core.paths import file_sha256, relative_to_config, split_local_dir
from synthvision.models.sources import cached_snapshot, is_hub_id, open_clip_hub_model

BUILT_IN_BACKENDS = ("tiny", "loadtest")  # generators with no weights to name


def weights_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (names and each file's sha256), 16 hex digits."""
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if file != path else file.name}\0".encode())
        digest.update(file_sha256(str(file.resolve()), stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def model_ref(value: str, base_dir: str | None) -> str:
    """`value` (a config field naming a model) as lineage names it: see the module's docstring."""
    prefix, rest = split_local_dir(value)
    if not os.path.isabs(rest):  # a name, a tag or a hub id
        return _with_commit(value) if is_hub_id(value) and "/" in value else value
    shown = relative_to_config(value, base_dir) if base_dir else prefix + Path(rest).name
    return f"{shown}@sha256:{weights_digest(Path(rest))}" if Path(rest).exists() else shown


def generator_ref(config: GeneratorConfig, base_dir: str | None) -> str:
    """`backend:model`, e.g. `glide:../models/glide@sha256:...` or `diffusers:org/name@<commit>`."""
    if config.backend in BUILT_IN_BACKENDS:
        return config.backend
    return f"{config.backend}:{model_ref(config.model, base_dir)}"


def clip_ref(config: ClipConfig, base_dir: str | None) -> str:
    """`model` or `model/pretrained`; a tag with the hub repository and commit open_clip loads it from."""
    model = model_ref(config.model, base_dir)
    if config.pretrained is None:
        return model
    hub = open_clip_hub_model(config)
    if hub is None:
        return f"{model}/{model_ref(config.pretrained, base_dir)}"
    return f"{model}/{config.pretrained} ({_with_commit(hub.repo_id)})"


def _with_commit(repo_id: str) -> str:
    """`repo_id@commit` of the snapshot the local cache holds (what a load read), or the id alone."""
    snapshot = cached_snapshot(repo_id)
    return f"{repo_id}@{snapshot.name}" if snapshot else repo_id
