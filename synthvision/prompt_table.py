"""The prompt stage's output, `prompts.parquet`: one row per prompt, its config hash in the metadata.

Columns: prompt_id (= row number), class_id, class_name, text, source (basic, language_enhancement or
basic_fallback). The file is small (classes x prompts), written atomically, and reused when its hash
matches.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from synthvision import failpoints
from synthvision.config import RunConfig
from synthvision.label_spaces import LabelSpace
from synthvision.prompts import Prompt, basic_prompts, language_enhanced_prompts
from synthvision.stages import stage
from synthvision.storage import Storage

PROMPTS_FILE = stage("prompts").output
HASH_KEY = b"synthvision.config_hash"


def expand_prompts(config: RunConfig, label_space: LabelSpace) -> list[Prompt]:
    """Run the configured strategy (B or LE) over the label space."""
    template = config.prompts.template or label_space.default_template
    if config.prompts.strategy == "basic":
        return basic_prompts(label_space, template)
    from synthvision.sentence_model import load_sentence_model, sample_sentences

    model, tokenizer = load_sentence_model(config.prompts.sentence_model)
    sentences = {}
    for class_id, name in enumerate(tqdm(label_space.classes, desc="language enhancement", unit="class")):
        sentences[class_id] = sample_sentences(
            model, tokenizer, name, config.prompts.sentences_per_class, config.prompts.sentence_model, config.seed
        )
        failpoints.reach("prompts.class")
    return language_enhanced_prompts(label_space, template, sentences, config.prompts.sentences_per_class)


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
