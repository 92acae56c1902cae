"""Where a config's values point: which fields name local paths, how a relative one resolves (against
the config file's folder; an override's against the working directory), how a value that may be a tag,
a hub id or a path stays what it is, and how a local data set is known by its content.

Pure: no torch, fsspec or PIL.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Fields that name local files or folders, and fields that name a model or label space that may be a
# local path. A relative path in a config file is relative to the file's folder (a config runs the same
# from any working directory, and `submit` sends absolute paths); one given with --set is relative to
# the working directory. One rule (`resolved`) for all of them, and for `output`:
# - PATHS always are local paths: a relative one is made absolute.
# - REFERENCES may be a name a library resolves (a built-in label space, an open_clip model name or
#   pretrained tag such as `openai`, a hub id such as `org/model`, `tiny`) or a local path. A value
#   stays what it is written as, unless it is written as a path (absolute, `./`, `../`, `~`, or after
#   `local-dir:`: made absolute, existing or not, so an error names the place looked at) or names a
#   file or folder that exists next to the config (found there, as `from_pretrained` finds a folder
#   before a hub id). A tag is never turned into a path.
# Real data sets are seen by stage hashes by their content (see `content_id`).
DATA_SETS = (
    "evaluation.test_set",
    "fewshot.train_set",
    "transfer.train_set",
    "transfer.test_set",
    "scratch.real_train_set",
)
PATHS = (*DATA_SETS, "pretrain.init_backbone")
REFERENCES = (
    "label_space",
    "transfer.label_space",
    "generator.model",
    "prompts.sentence_model.model",
    "prompts.llm.model",
    "clip.model",
    "clip.pretrained",
)
LOCAL_DIR = "local-dir:"
PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


def is_url(value: str) -> bool:
    """An fsspec URL (`s3://...`, `file://...`): never resolved against a folder."""
    return "://" in value


def written_as_path(value: str) -> bool:
    """Written so that it can only be a local path: absolute, `~`, `./`, `../` (or `.`, `..`)."""
    return value.startswith(PATH_PREFIXES) or value in (".", "..")


def content_id(path: str) -> str:
    """A local data set by what it holds: a file by the sha256 of its bytes, a folder by its files'
    relative paths and sizes (reading every image of a large folder at each start would cost minutes);
    a URL or a missing path by its name. An edited test set is a new one; a copy elsewhere the same."""
    local = Path(path)
    if is_url(path) or not local.exists():
        return path
    if local.is_file():
        stat = local.stat()
        return "sha256:" + file_sha256(str(local.resolve()), stat.st_size, stat.st_mtime_ns)
    listing = sorted((str(f.relative_to(local)), f.stat().st_size) for f in local.rglob("*") if f.is_file())
    return "files-sha256:" + hashlib.sha256(json.dumps(listing).encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """The hex sha256 of a file's bytes, cached per size and modification time (stage hashes and
    lineage ask for the same files many times per process)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def split_local_dir(value: str) -> tuple[str, str]:
    """(`local-dir:` or "", the path after it): the marker stays, the path is resolved or made relative."""
    return (LOCAL_DIR, value.removeprefix(LOCAL_DIR)) if value.startswith(LOCAL_DIR) else ("", value)


def resolved(value: Any, base: Path, always: bool) -> Any:
    """`value` made absolute against `base` where it is a relative local path (the rule above PATHS;
    `output` too, a local path or a URL)."""
    if not isinstance(value, str) or not value or is_url(value):
        return value
    prefix, rest = split_local_dir(value)
    path = Path(rest).expanduser()
    local = always or prefix or written_as_path(rest) or (base / path).exists()
    if not local:
        return value  # a name: a tag, a hub id, a built-in
    return prefix + os.path.normpath(path if path.is_absolute() else base / path)


def fields_set(data: dict[str, Any], names: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(name, the mapping that holds it, its key) for each dotted field name set in a config mapping."""
    for name in names:
        *parents, leaf = name.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), str):
            yield name, node, leaf


def resolve_paths(data: dict[str, Any], base: Path, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A copy of a config mapping with its relative local paths made absolute against `base` (the rule
    above PATHS); with `only`, just the fields at or under those dotted keys (what --set overrode)."""

    def chosen(name: str) -> bool:
        return only is None or any(name == key or name.startswith(f"{key}.") for key in only)

    data = copy.deepcopy(data)
    for name, node, leaf in fields_set(data, ("output", *PATHS, *REFERENCES)):
        if chosen(name):
            node[leaf] = resolved(node[leaf], base, always=name == "output" or name in PATHS)
    return data


def relative_to_config(value: str, base_dir: str | None) -> str:
    """An absolute local path (after `local-dir:` too) relative to the config's folder, as reports,
    lineage and stage hashes name it: the same on every machine; anything else as it is."""
    prefix, rest = split_local_dir(value)
    if base_dir is None or is_url(rest) or not os.path.isabs(rest):
        return value
    return prefix + os.path.relpath(rest, base_dir)
