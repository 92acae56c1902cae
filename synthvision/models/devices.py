"""Device and dtype selection: written for GPUs, correct on CPU.

A worker process can be bound to one device: `bind_device` claims one of a list of devices for the
life of the process (an exclusive lock per device) and records it in `SYNTHVISION_DEVICE`, which is
what a config's `device: auto` then means in that process. That is how one command runs one worker
process per GPU, each holding its own device, while shards are handed to whichever worker is free.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

import torch

from synthvision.core.errors import ConfigError

DEVICE_ENV = "SYNTHVISION_DEVICE"
SLOT_ENV = "SYNTHVISION_DEVICE_SLOT"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_claimed: list[IO[str]] = []  # lock files held open for the life of the process


def resolve_device(name: str) -> torch.device:
    """'auto' is the device this process is bound to, else the first CUDA device when there is one,
    else the CPU."""
    if name == "auto":
        name = os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device (try 'auto', 'cpu', 'cuda:0')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but no CUDA device is available here")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is float16 on CUDA (half the memory, tensor cores) and float32 on CPU, where half
    precision is slow or unsupported."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


def expand_devices(devices: list[str]) -> list[str]:
    """The worker devices a config names: 'auto' stands for every CUDA device here (or one CPU worker
    on a machine without one). Each entry is checked to be a usable torch device."""
    expanded: list[str] = []
    for name in devices:
        if name == "auto":
            count = torch.cuda.device_count()
            expanded += [f"cuda:{i}" for i in range(count)] if count else ["cpu"]
        else:
            resolve_device(name)
            expanded.append(name)
    return expanded


def bind_device(devices: list[str], lock_dir: str) -> str:
    """Claim the first device of `devices` no other live process holds (one lock file per device
    slot in `lock_dir`) and make it this process's 'auto' device. The lock is released when the
    process exits, however it exits, so a replacement worker can claim the slot again."""
    for slot, name in enumerate(devices):
        handle = open(Path(lock_dir) / f"device-{slot}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _claimed.append(handle)
        os.environ[DEVICE_ENV] = name
        os.environ[SLOT_ENV] = str(slot)
        if name.startswith("cuda"):
            torch.cuda.set_device(torch.device(name))
        return name
    raise RuntimeError(f"all {len(devices)} device slots in {lock_dir} are held by other worker processes")


def bound_device() -> str:
    """This process's device as '<slot>:<device>' for reports ('-' when not bound)."""
    name = os.environ.get(DEVICE_ENV)
    return f"{os.environ.get(SLOT_ENV, '?')}:{name}" if name else "-"
