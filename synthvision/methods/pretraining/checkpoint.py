"""Checkpoints in the run's storage, without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is `step-00001000.safetensors` (model and optimizer tensors) plus `step-00001000.json`
(the optimizer's non-tensor state and the loop's counters), then `latest.json` naming it, written
last: a job killed mid-write resumes from the previous checkpoint. Older checkpoints are deleted
once a newer one is committed. `latest.json` also records the config hash of the job: a checkpoint
of another config (the same output, a changed `pretrain` section) is never resumed from.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from synthvision.core import failpoints
from synthvision.storage.store import Storage

_TENSOR = "__tensor__"


def flatten(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """`state` with every tensor moved into `tensors` under a path key and replaced by a reference."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(state, dict):
        return {"__dict__": [[key, flatten(value, f"{prefix}.{key}", tensors)] for key, value in state.items()]}
    if isinstance(state, (list, tuple)):
        return [flatten(value, f"{prefix}.{i}", tensors) for i, value in enumerate(state)]
    return state


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict) and _TENSOR in skeleton:
        return tensors[skeleton[_TENSOR]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {key: unflatten(value, tensors) for key, value in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten(value, tensors) for value in skeleton]
    return skeleton


class Checkpointer:
    def __init__(self, storage: Storage, reldir: str, config_hash: str = ""):
        self.storage = storage
        self.reldir = reldir
        self.config_hash = config_hash

    def save(
        self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, counters: dict[str, Any]
    ) -> None:
        tensors: dict[str, torch.Tensor] = {}
        skeleton = {
            "model": flatten(model.state_dict(), "model", tensors),
            "optimizer": flatten(optimizer.state_dict(), "optimizer", tensors),
        }
        name = f"step-{step:08d}"
        previous = (self.storage.read_json(f"{self.reldir}/latest.json") or {}).get("checkpoint")  # of any config
        self.storage.write_bytes(f"{self.reldir}/{name}.safetensors", save_safetensors(tensors))
        self.storage.write_bytes(
            f"{self.reldir}/{name}.json", json.dumps({"skeleton": skeleton, "counters": counters}).encode()
        )
        failpoints.reach("checkpoint.before_latest")
        self.storage.write_bytes(
            f"{self.reldir}/latest.json",
            json.dumps({"checkpoint": name, "step": step, "config_hash": self.config_hash}).encode(),
        )
        if previous is not None and previous != name:
            for suffix in (".safetensors", ".json"):
                self.storage.fs.rm(self.storage.path(f"{self.reldir}/{previous}{suffix}"))

    def latest_name(self) -> str | None:
        """The latest checkpoint of this config, if any."""
        latest = self.storage.read_json(f"{self.reldir}/latest.json")
        return None if latest is None or latest.get("config_hash", "") != self.config_hash else latest["checkpoint"]

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Load the latest checkpoint into `model` and `optimizer`; its counters, or None if there is none."""
        name = self.latest_name()
        if name is None:
            return None
        record = self.storage.read_json(f"{self.reldir}/{name}.json")
        tensors = load_safetensors(self.storage.read_bytes(f"{self.reldir}/{name}.safetensors"))
        model.load_state_dict(unflatten(record["skeleton"]["model"], tensors))
        optimizer.load_state_dict(unflatten(record["skeleton"]["optimizer"], tensors))
        return record["counters"]
