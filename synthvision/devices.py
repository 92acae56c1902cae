"""Device and dtype selection: written for GPUs, correct on CPU."""

from __future__ import annotations

import torch

from synthvision.errors import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
