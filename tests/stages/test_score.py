import io
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from synthvision.core.data_config import ClipConfig
from synthvision.core.errors import ConfigError, DataError
from synthvision.core.label_spaces import LabelSpace
from synthvision.core.manifest import Manifest
from synthvision.datasets.colour_demo import write_colour_test_set
from synthvision.datasets.labelled import iter_test_set
from synthvision.methods.filtering import ZeroShotHead
from synthvision.models.clip import ClipModel
from synthvision.run import Run
from synthvision.stages import generate, score
from synthvision.stages.score import DECODE_ERROR
from synthvision.stages.units import ensure
from synthvision.storage.store import Storage
from tests.conftest import tiny_config

SPACE = LabelSpace("colours", ("red", "blue"))


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar(storage: Storage, relpath: str, samples: list[dict]) -> Manifest:
    with storage.atomic_writer(relpath) as stream:
        with wds.TarWriter(stream, encoder=False) as tar:
            for sample in samples:
                tar.write(sample)
    return Manifest("shard-00000", "generate", "g", "s", relpath, len(samples), stream.bytes, stream.sha256)


def test_score_records_probabilities_filter_and_features(tmp_path):
    labels = tmp_path / "red-blue.txt"
    labels.write_text("red\nblue\n")
    config = tiny_config(
        tmp_path / "run",
        labels,
        shards={"images_per_class": 3, "shard_size": 3},
        clip={"batch_size": 2},
        filter={"threshold": 0.5},
    )
    run = Run(config)
    ensure(run, "prompts")
    spec = run.plan.shard(0)
    # a hand-made shard committed as the run's first: red, an undecodable sample, blue
    samples = [
        {"__key__": "0000000000", "png": png((255, 0, 0)), "cls": b"0"},
        {"__key__": "0000000001", "png": b"not an image", "cls": b"1"},
        {"__key__": "0000000002", "png": png((0, 0, 255)), "cls": b"1"},
    ]
    tar = write_tar(run.storage, generate.shard_tar_path(spec.name), samples)
    source = replace(tar, shard=spec.name, config_hash=run.hashes["generate"], spec_hash=spec.spec_hash)
    run.commits.commit_shard(source)
    clip = ClipModel.load(ClipConfig(model="tiny"))
    # a hand-made head: class 0 is the direction of the red image's embedding, class 1 its opposite
    red = clip.encode_images([Image.new("RGB", (32, 32), (255, 0, 0))])[0]
    red /= np.linalg.norm(red)
    head = ZeroShotHead(np.stack([red, -red]), logit_scale=10.0)
    run.clip_and_head, run.filter_head = lambda: (clip, head), lambda: head

    manifest, scored = ensure(run, "score", 0)
    assert scored and manifest.count == 2 and manifest.spec_hash == source.sha256
    assert manifest.dropped[DECODE_ERROR] == 1
    table = pq.read_table(run.storage.path(manifest.data_file)).to_pydict()
    assert table["key"] == ["0000000000", "0000000002"] and table["label"] == [0, 1]
    assert table["prob"][0] == pytest.approx(1 / (1 + np.exp(-20.0)), rel=1e-4)  # cos +1 vs -1, scale 10
    assert table["top1"][0] == 0 and table["passed"][0]
    assert len(table["logits"][0]) == 2 and len(table["embedding"][0]) == 32
    np.testing.assert_allclose(
        np.asarray(table["embedding"][0]) / np.linalg.norm(table["embedding"][0]), red, rtol=1e-4, atol=1e-5
    )
    assert manifest.dropped.get("clip_low_confidence", 0) == int(not table["passed"][1])
    run.clip_and_head = lambda: pytest.fail("model loaded for a committed shard")
    assert ensure(run, "score", 0) == (manifest, False)


def test_image_folder_and_webdataset_test_sets(tmp_path):
    storage = Storage(str(tmp_path))
    folder = write_colour_test_set(storage, "test", SPACE, per_class=2, size=16, seed=0)
    pairs = list(iter_test_set(folder, "auto", SPACE))
    assert [label for _, label in pairs] == [1, 1, 0, 0]  # folders sorted: blue, red
    assert pairs[0][0].size == (16, 16)
    assert write_colour_test_set(storage, "test", SPACE, 2, 16, 0) == folder  # idempotent

    write_tar(storage, "wds/test-0.tar", [{"__key__": "a", "png": png((0, 0, 255)), "cls": b"1"}])
    assert [label for _, label in iter_test_set(storage.url_of("wds"), "auto", SPACE)] == [1]


def test_test_set_errors(tmp_path):
    storage = Storage(str(tmp_path))
    (tmp_path / "imgs" / "green").mkdir(parents=True)
    with pytest.raises(DataError, match="folder 'green' .* is not a class of label space colours"):
        list(iter_test_set(str(tmp_path / "imgs"), "imagefolder", SPACE))
    with pytest.raises(DataError, match="does not exist"):
        list(iter_test_set(str(tmp_path / "nothing"), "auto", SPACE))
    write_tar(storage, "bad/x.tar", [{"__key__": "a", "png": png((0, 0, 255)), "cls": b"7"}])
    with pytest.raises(DataError, match="class 7 outside the label space"):
        list(iter_test_set(storage.url_of("bad"), "webdataset", SPACE))
    with pytest.raises(ConfigError, match="'sky' is not a colour"):
        write_colour_test_set(storage, "t", LabelSpace("x", ("sky",)), 1, 8, 0)


def test_parallel_decoding_gives_the_parquet_of_one_thread(tmp_path):
    """Workers that read, decode and preprocess ahead of CLIP change when, never what: the same parquet
    bytes, an undecodable sample counted the same, with no worker, 3 threads and 2 processes, and
    batches that split it."""
    labels = tmp_path / "red-blue.txt"
    labels.write_text("red\nblue\n")
    parquets, dropped = [], []
    for name, workers in (
        ("serial", {"workers": 0}),
        ("threads", {"workers": 3}),
        ("processes", {"workers": 2, "processes": True}),
    ):
        config = tiny_config(
            tmp_path / name,
            labels,
            shards={"images_per_class": 5, "shard_size": 10},
            clip={"batch_size": 3, **workers},
        )
        run = Run(config)
        ensure(run, "prompts")
        spec = run.plan.shard(0)
        samples = [
            {"__key__": sample.key, "png": png((25 * i, 255 - 25 * i, 7 * i)), "cls": str(sample.class_id).encode()}
            for i, sample in enumerate(spec.samples)
        ]
        samples[4]["png"] = b"truncated"
        tar = write_tar(run.storage, generate.shard_tar_path(spec.name), samples)
        tar = replace(tar, shard=spec.name, config_hash=run.hashes["generate"], spec_hash=spec.spec_hash)
        run.commits.commit_shard(tar)
        manifest = score.score(run, 0)
        parquets.append(run.storage.read_bytes(manifest.data_file))
        dropped.append(manifest.dropped)
        assert score.in_processes(run.config.clip, score.cpu_workers(run.config.clip.workers)) == (name == "processes")
    assert parquets[0] == parquets[1] == parquets[2]
    assert dropped[0] == dropped[1] == dropped[2] and dropped[0][DECODE_ERROR] == 1
    assert pq.read_table(io.BytesIO(parquets[0])).num_rows == 9


def test_a_score_worker_runs_one_torch_thread_and_threads_started_later_keep_the_process_count():
    """The workers' one-thread setting once leaked into every thread started after them: a later
    shard's generation ran single-threaded and its floats differed from the same call's alone."""
    import threading

    import torch

    from synthvision.core.pipelining import ordered_map

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a count a leak could lower, on any machine
    try:
        in_workers = list(ordered_map(lambda _: torch.get_num_threads(), range(4), 2, 2, score._one_torch_thread))
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(before)
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        assert in_workers == [1, 1, 1, 1]
    assert later == [2]


def _in_processes_here(answers) -> None:
    answers.put(score.in_processes(ClipConfig(processes=True, workers=2), 2))


def test_a_daemonic_process_decodes_in_threads():
    """A Dask worker's process is daemonic by default, and a daemonic process may not start
    processes: there the score stage decodes in threads, whatever `clip.processes` says."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    for daemon in (True, False):
        child = context.Process(target=_in_processes_here, args=(answers,), daemon=daemon)
        child.start()
        assert answers.get(timeout=120) is (not daemon)
        child.join(timeout=60)
    assert score.in_processes(ClipConfig(workers=8), 8) and not score.in_processes(ClipConfig(workers=4), 4)
    assert not score.in_processes(ClipConfig(processes=True, workers=0), 0)
