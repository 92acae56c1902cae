"""Stable content hashes for configs, shard specs and seeds (no torch, no I/O)."""

import hashlib
import json
from typing import Any


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON form of `value`: same content, same hash, on every machine."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def derive_seed(base_seed: int, *parts: Any) -> int:
    """A 63-bit seed derived from `base_seed` and `parts`; independent streams per image or class."""
    digest = hashlib.blake2b(repr((base_seed, *parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
