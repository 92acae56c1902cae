"""The fewshot stage on tiny models and a rendered real pool: its flow end to end (report, plot,
artifact, committed), shards guided by the real shots, and BatchNorm in train mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from synthvision.core.errors import DataError
from synthvision.stages.generate import guidance_shots
from synthvision.stages.units import ensure
from tests.helpers import generated_run


def test_few_shot_flow_end_to_end_on_tiny_models(make_config, tmp_path, prefect_server):
    from flows.stages import fewshot_flow
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.run import Run
    from synthvision.stages import fewshot as fewshot_stage
    from synthvision.storage.store import Storage

    pool = write_colour_test_set(
        Storage(str(tmp_path / "pool")), "train", Run(make_config()).label_space, 3, 32, seed=99
    )
    fewshot = {
        "train_set": pool,
        "shots": [2, 1],
        "strategies": ["real_only", "mix", "syn_then_real"],
        "epochs": 2,
        "real_filter": {"enabled": True},
    }
    config = make_config(fewshot=fewshot)
    run = generated_run(config, scored=True)
    report = fewshot_flow(config)
    assert [(row.shots, row.strategy) for row in report.results] == [
        (m, s) for m in (1, 2) for s in ("real_only", "mix", "syn_then_real")
    ]
    assert all(0 <= row.top1 <= 100 for row in report.results) and report.test_images == 9
    assert all(
        row.synthetic_used + row.real_filter_dropped == report.synthetic["after_clip_filter"]
        for row in report.results
        if row.strategy != "real_only"
    )
    with run.storage.open("fewshot/accuracy.png") as stream:
        assert Image.open(stream).size[0] > 100
    assert (
        "| shots | CT w. init (real only) | mix | syn -> real |" in run.storage.read_bytes("fewshot/report.md").decode()
    )
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.fanout import artifact_key
    from synthvision.run import open_run

    key = artifact_key(open_run(config), "fewshot-report")
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    # the UI cannot serve accuracy.png from the output: the artifact carries the plot itself
    assert "![accuracy vs shots](data:image/png;base64," in artifact.data and "](accuracy.png)" not in artifact.data
    assert fewshot_stage.committed(Run(config)) == report  # committed: read back as the same report

    overlapping = make_config(fewshot={**fewshot, "train_set": run.test_set_url()})
    with pytest.raises(DataError, match="fewshot.train_set shares 9 image\\(s\\) with the test set"):
        fewshot_stage.few_shot(Run(overlapping))


def test_guided_shards_start_from_the_class_shots_and_record_them(make_config, tmp_path):
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.datasets.labelled import iter_labelled
    from synthvision.run import Run
    from synthvision.storage.store import Storage
    from synthvision.storage.tars import decode_image, read_samples

    pool = write_colour_test_set(
        Storage(str(tmp_path / "pool")), "train", Run(make_config()).label_space, 4, 16, seed=5
    )
    generator = {
        "backend": "glide",
        "model": "tiny",
        "resolution": 16,
        "glide": {"base_respacing": "20", "upsample": False},
    }

    def shard_samples(**guidance):
        fewshot = {"train_set": pool, "shots": [2], "real_guidance": {"enabled": True, "shots": 2, **guidance}}
        run = Run(make_config(output=tmp_path / str(guidance), generator=generator, fewshot=fewshot))
        ensure(run, "prompts")
        manifest, _ = ensure(run, "generate", 0)
        with run.storage.open(manifest.data_file) as stream:
            return run, list(read_samples(stream, manifest.data_file))

    run, samples = shard_samples()  # 2 shots: t* = 40 of 100
    shots = guidance_shots(run.config)
    by_digest = {ref.digest: (class_id, ref.image) for class_id, refs in enumerate(shots) for ref in refs}
    assert [len(refs) for refs in shots] == [2, 2, 2]
    pool_digests = {digest for _, _, digest in iter_labelled(pool, "auto", run.label_space)}
    distances = {}
    for strength in (0.1, 1.0):
        _, guided = shard_samples(start_step=round(strength * 100))
        distances[strength] = []
        for sample in guided:
            meta = json.loads(sample["json"])
            assert meta["reference"] in pool_digests and by_digest[meta["reference"]][0] == meta["class_id"]
            assert meta["real_guidance_strength"] == strength
            reference = np.asarray(by_digest[meta["reference"]][1].convert("RGB"), np.float32)
            distances[strength].append(np.abs(np.asarray(decode_image(sample["png"]), np.float32) - reference).mean())
    assert np.mean(distances[0.1]) < 0.5 * np.mean(distances[1.0])  # little noise: near the reference
    assert {json.loads(s["json"])["reference"] for s in samples} <= pool_digests


def test_few_shot_with_batch_norm_in_train_mode_runs_the_tower_on_images(make_config, tmp_path, monkeypatch):
    from synthvision.datasets.colour_demo import write_colour_test_set
    from synthvision.methods.fewshot import Encoder
    from synthvision.run import Run
    from synthvision.stages import fewshot as fewshot_stage
    from synthvision.storage.store import Storage

    pool = write_colour_test_set(
        Storage(str(tmp_path / "pool")), "train", Run(make_config()).label_space, 2, 32, seed=99
    )
    fewshot = {"train_set": pool, "shots": [1], "strategies": ["mix"], "epochs": 2, "batch_norm": "train"}
    run = generated_run(make_config(clip={"model": "tiny-rn"}, fewshot=fewshot), scored=True)
    encoded = []
    monkeypatch.setattr(
        Encoder,
        "features",
        lambda self, images, original=Encoder.features: encoded.append(len(images)) or original(self, images),
    )
    report = fewshot_stage.few_shot(run)
    assert report.encoder == {"batch_norm": "train", "tuned": False}
    row = report.results[0]
    assert row.steps == 2  # 2 epochs of one synthetic batch (at most 12 images, batches of 512)
    # every step runs the tower on its real batch (3 shots) and synthetic batch, then the 9 test images
    assert sum(encoded) == 2 * (3 + row.synthetic_used) + 9
