"""The quality stage end to end on a tiny run: per class and for the run, from the stored scores."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from synthvision.methods.diversity import vendi_score
from synthvision.run import Run
from synthvision.stages import quality, score
from synthvision.stages.score import embeddings, kept, read_scores
from synthvision.stages.units import ensure


def test_the_quality_report_per_class_and_for_the_run(make_config):
    run = Run(make_config(quality={"near_duplicate_threshold": 0.9}, prompts={"strategy": "basic"}))
    ensure(run, "prompts")
    for index in range(run.plan.num_shards):
        ensure(run, "generate", index)
        ensure(run, "score", index)
    assert quality.committed(run) is None
    report = quality.quality(run)

    assert [row.name for row in report.classes] == list(run.label_space.classes)
    table = read_scores(run)
    features, labels, used = embeddings(table), np.asarray(table["label"]), kept(run, table, embeddings(table))[0]
    for class_id, row in enumerate(report.classes):
        mine = labels == class_id
        assert (row.images, row.kept) == (4, int(used[mine].sum()))
        assert row.pass_rate == pytest.approx(row.kept / row.images)
        assert row.image_vendi == pytest.approx(vendi_score(features[mine & used]))
        assert (row.kept == 0 and row.image_vendi == 0) or 1 - 1e-6 <= row.image_vendi <= row.kept + 1e-6
        assert 0 <= row.near_duplicate_rate <= 1
        assert row.prompts == sum(p.class_id == class_id for p in run.prompts)
        assert row.frechet_to_real is None or row.frechet_to_real >= -1e-6  # the demo test set is real here
    whole = report.run
    assert whole.name == "all" and whole.images == 12 and whole.kept == sum(r.kept for r in report.classes)
    assert whole.prompts == len(run.prompts) and whole.frechet_to_real is not None
    # committed: read back as the same report; the markdown and the plot are there for people
    assert quality.committed(run) == report
    assert json.loads(run.storage.read_bytes("quality/report.json"))["run"]["name"] == "all"
    markdown = run.storage.read_bytes("quality/report.md").decode()
    assert "| **all** |" in markdown and all(f"| {name} |" in markdown for name in run.label_space.classes)
    with Image.open(io.BytesIO(run.storage.read_bytes("quality/quality.png"))) as plot:
        assert plot.width > 300 and plot.height > 300


def test_the_near_duplicate_filter_drops_exactly_the_repeats_across_shards(make_config):
    """Two images of shard 1 made copies (in CLIP's features) of images of their class in shard 0:
    with filter.near_duplicates, training drops exactly those two, and says so."""
    import hashlib
    from dataclasses import replace

    import pyarrow as pa
    import pyarrow.parquet as pq

    config = make_config(filter={"clip_filter": False, "near_duplicates": 0.999}, prompts={"strategy": "basic"})
    run = Run(config)
    ensure(run, "prompts")
    for index in range(run.plan.num_shards):
        ensure(run, "generate", index)
        ensure(run, "score", index)
    first, second = (score.committed(run, index) for index in (0, 1))
    tables = [pq.read_table(io.BytesIO(run.storage.read_bytes(m.data_file))) for m in (first, second)]
    vectors = tables[1]["embedding"].to_pylist()
    copies = []
    for row, label in enumerate(tables[1]["label"].to_pylist()):
        source = tables[0]["label"].to_pylist().index(label) if label in tables[0]["label"].to_pylist() else None
        if source is not None and len(copies) < 2:
            vectors[row] = [1.0001 * v for v in tables[0]["embedding"][source].as_py()]  # same direction
            copies.append(tables[1]["key"][row].as_py())
    assert len(copies) == 2
    column = tables[1].schema.get_field_index("embedding")
    changed = tables[1].set_column(
        column, tables[1].schema.field(column), pa.array(vectors, tables[1].schema.field(column).type)
    )
    buffer = io.BytesIO()
    pq.write_table(changed, buffer)
    data = buffer.getvalue()
    run.storage.write_bytes(second.data_file, data)
    run.storage.write_manifest("scores", replace(second, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))

    synthetic = score.read_synthetic(run)
    assert synthetic.near_duplicates == 2 and synthetic.scored == 12
    assert sorted(set(table_keys(run)) - set(synthetic.keys)) == sorted(copies)
    without = score.read_synthetic(Run(config.model_copy(update={"filter": config.filter.model_copy(
        update={"near_duplicates": None})})))  # fmt: skip
    assert without.near_duplicates == 0 and len(without.keys) == 12


def table_keys(run: Run) -> list[str]:
    return read_scores(run)["key"].to_pylist()


def test_without_a_test_set_the_few_shot_pool_is_the_real_side(make_config, tmp_path):
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.storage.store import Storage

    space = Run(make_config()).label_space
    pool = write_colour_test_set(Storage(str(tmp_path / "real")), "pool", space, 3, 32, 1)
    config = make_config(
        quality={}, prompts={"strategy": "basic"}, evaluation={"demo_test_set": None}, fewshot={"train_set": pool}
    )
    run = Run(config)
    ensure(run, "prompts")
    for index in range(run.plan.num_shards):
        ensure(run, "generate", index)
        ensure(run, "score", index)
    report = quality.quality(run)
    assert report.real_set == pool and report.run.frechet_to_real is not None
