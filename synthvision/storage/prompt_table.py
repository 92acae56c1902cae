"""The prompt stage's output, `prompts.parquet`: one row per prompt, its config hash in the metadata.

Columns: prompt_id (= row number), class_id, class_name, text, source (basic, language_enhancement or
basic_fallback). The file is small (classes x prompts), written atomically, and reused when its hash
matches.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from synthvision.core.prompts import Prompt
from synthvision.core.stage_table import stage
from synthvision.storage.store import Storage

PROMPTS_FILE = stage("prompts").output
HASH_KEY = b"synthvision.config_hash"


def write_prompts(storage: Storage, prompts: list[Prompt], config_hash: str) -> None:
    table = pa.table(
        {
            "prompt_id": pa.array([p.prompt_id for p in prompts], pa.int32()),
            "class_id": pa.array([p.class_id for p in prompts], pa.int32()),
            "class_name": pa.array([p.class_name for p in prompts], pa.string()),
            "text": pa.array([p.text for p in prompts], pa.string()),
            "source": pa.array([p.source for p in prompts], pa.string()),
        }
    ).replace_schema_metadata({HASH_KEY: config_hash.encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes(PROMPTS_FILE, buffer.getvalue())


def read_prompts(storage: Storage, config_hash: str) -> list[Prompt] | None:
    """The committed prompt table if it was written by this config, else None."""
    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(PROMPTS_FILE)))
    except FileNotFoundError:
        return None
    if (table.schema.metadata or {}).get(HASH_KEY, b"").decode() != config_hash:
        return None
    return [Prompt(**row) for row in table.to_pylist()]
