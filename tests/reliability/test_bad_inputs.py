"""Bad inputs through the real `synthvision` command: each gives exit status 2 and one line that
names the field, file or shard at fault, no traceback, and leaves a finished output untouched.
Corrupt shards among the inputs of scoring are quarantined and regenerated while the run goes on."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import yaml

from synthvision.core.config import load_config
from synthvision.run import Run
from tests.reliability.harness import TALLY, check_complete, tail

BASE = {
    "run_name": "inputs",
    "generator": {"backend": "tiny", "steps": 2, "resolution": 32},
    "shards": {"images_per_class": 4, "shard_size": 2},
    "clip": {"model": "tiny"},
    "evaluation": {"demo_test_set": {"per_class": 2, "size": 32}},
    "orchestration": {"max_workers": 1, "retries": 0, "gpu_limit": None},
}


def write_config(folder: Path, output: str, label_space: Path | str, name: str = "config.yaml", **sections) -> str:
    data = {**BASE, "output": output, "label_space": str(label_space)}
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return str(path)


def files_of(root: Path) -> dict[str, str]:
    """Every file of an output and its sha256 (the lock comes and goes with each run)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock.json"
    }


def expect_one_line_error(launcher, argv: list[str], *expected: str) -> str:
    code = launcher.run(argv)
    log = tail(launcher.logs / f"cli-{launcher.count:03d}.log", 200_000)
    assert "Traceback" not in log, log
    assert code == 2, f"exit {code}\n{log}"
    last = log.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(text in last for text in expected), last
    TALLY.bad_inputs += 1
    return last


@pytest.fixture(scope="module")
def finished(launcher, tmp_path_factory):
    """A finished run of the base config, which every error case below points at."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "colours.txt").write_text("red\ngreen\nblue\n")
    config = write_config(folder, str(folder / "run"), folder / "colours.txt")
    assert launcher.run(["run", config]) == 0, tail(launcher.logs / f"cli-{launcher.count:03d}.log")
    return folder, config


def copy_of_finished(finished, folder: Path, name: str = "copy.yaml") -> str:
    """A config of the finished run whose output is a copy of it in `folder/run`."""
    source, config = finished
    if not (folder / "run").exists():
        shutil.copytree(source / "run", folder / "run")
    path = folder / name
    path.write_text(yaml.safe_dump({**yaml.safe_load(Path(config).read_text()), "output": str(folder / "run")}))
    return str(path)


def _file(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return str(folder / name)


# (case, --set overrides or a function of the folder giving them, what the error line must name)
CONFIG_CASES = [
    ("unknown label space", ["label_space=cifar1000"], ["label_space 'cifar1000' is neither a built-in"]),
    ("empty label space", lambda f: ["label_space=" + _file(f, "empty.txt", "")], ["empty.txt is empty"]),
    (
        "duplicate classes",
        lambda f: ["label_space=" + _file(f, "dup.txt", "cat\ndog\ncat\n")],
        ["dup.txt: entry 3 'cat' duplicates entry 1"],
    ),
    (
        "blank class",
        lambda f: ["label_space=" + _file(f, "blank.json", '["cat", " ", "dog"]')],
        ["blank.json: entry 2 is blank"],
    ),
    (
        "label file of comments only",
        lambda f: ["label_space=" + _file(f, "comments.txt", "# cat\n\n# dog\n")],
        ["comments.txt is empty"],
    ),
    (
        "label space JSON not a list",
        lambda f: ["label_space=" + _file(f, "obj.json", '{"classes": 1}')],
        ["obj.json: the JSON must be a list"],
    ),
    (
        "label space invalid JSON",
        lambda f: ["label_space=" + _file(f, "broken.json", '["cat", ')],
        ["broken.json: invalid JSON"],
    ),
    (
        "template without {}",
        ["prompts.template=a photo"],
        ["prompts.template: template 'a photo' must contain exactly one '{}'"],
    ),
    (
        "zero images per class",
        ["shards.images_per_class=0"],
        ["shards.images_per_class: Input should be greater than 0"],
    ),
    (
        "negative images per class",
        ["shards.images_per_class=-4"],
        ["shards.images_per_class: Input should be greater than 0"],
    ),
    ("zero shard size", ["shards.shard_size=0"], ["shards.shard_size: Input should be greater than 0"]),
    (
        "shard size larger than the run",
        ["shards.shard_size=100"],
        ["shards.shard_size (100) is larger than the run (12 images"],
    ),
    (
        "unknown generator",
        ["generator.backend=dalle"],
        ["generator.backend: Input should be 'diffusers', 'glide', 'tiny' or 'loadtest'"],
    ),
    ("unknown CLIP", ["clip.model=ViT-Nope"], ["clip.model: unknown open_clip model 'ViT-Nope'"]),
    (
        "missing local weights",
        ["generator.backend=diffusers", "generator.model=/nonexistent/sd-weights"],
        ["generator.model", "/nonexistent/sd-weights"],
    ),
    (
        "missing test set",
        ["evaluation.demo_test_set=null", "evaluation.test_set=/nonexistent/test"],
        ["evaluation.test_set /nonexistent/test does not exist"],
    ),
    ("unknown field", ["generatr.steps=3"], ["generatr: unknown field"]),
    ("not a number", ["seed=abc"], ["seed: Input should be a valid integer"]),
    ("negative epochs", ["training.epochs=-2"], ["training.epochs: Input should be greater than 0"]),
    (
        "credentials in the config",
        ["storage_options={key: AKIAFAKE, secret: s3cr3t}"],
        ["storage_options: 'key' looks like a credential"],
    ),
    ("override without =", ["generator.steps"], ["expected KEY=VALUE"]),
    (
        "device this machine lacks",
        ["orchestration.engine=processes", "orchestration.devices=[cuda:7]"],
        ["device 'cuda:7'"],
    ),
    (
        "changed config on the same output",
        ["generator.steps=3"],
        ["holds the generate, score data of another config", "generator.steps: 2 -> 3", "--new-version"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("case, overrides, expected", CONFIG_CASES, ids=[case for case, _, _ in CONFIG_CASES])
def test_config_errors_are_one_line_and_lose_nothing(case, overrides, expected, finished, launcher):
    folder, config = finished
    before = files_of(folder / "run")
    overrides = overrides(folder) if callable(overrides) else overrides
    expect_one_line_error(launcher, ["run", config, *[arg for o in overrides for arg in ("--set", o)]], *expected)
    assert files_of(folder / "run") == before


@pytest.mark.slow
def test_config_files_that_cannot_be_read(launcher, tmp_path):
    expect_one_line_error(launcher, ["run", str(tmp_path / "nope.yaml")], "config file not found", "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("generator: {steps: [\n")
    expect_one_line_error(launcher, ["run", str(broken)], "broken.yaml")


@pytest.mark.slow
def test_a_new_version_replaces_the_data_of_a_changed_config(finished, launcher, tmp_path):
    original, changed = copy_of_finished(finished, tmp_path), copy_of_finished(finished, tmp_path, "changed.yaml")
    data = yaml.safe_load(Path(changed).read_text())
    data["generator"]["steps"] = 3
    Path(changed).write_text(yaml.safe_dump(data))
    assert launcher.run(["run", changed, "--new-version"]) == 0, tail(launcher.logs / f"cli-{launcher.count:03d}.log")
    run = Run(load_config(changed))
    check_complete(run)
    archived = run.storage.read_json("versions/v0001.json")
    assert archived["config"]["generator"]["steps"] == 2 and run.storage.read_json("run.json")["version"] == 2
    # and now the first config is the one refused
    expect_one_line_error(launcher, ["run", original], "generator.steps: 3 -> 2")


@pytest.mark.slow
def test_an_output_without_write_permission(launcher, tmp_path, colours_file):
    if os.geteuid() == 0:
        output = "/sys/synthvision-no-write"  # root may write anywhere a mode bit forbids; not in sysfs
    else:
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o555)
        output = str(locked / "run")
    expect_one_line_error(
        launcher, ["run", write_config(tmp_path, output, colours_file)], "output", output, "permission"
    )


def test_s3_output_without_credentials_is_one_line_before_any_work(tmp_path, colours_file):
    from tests.flows.test_cli import cli

    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookup: there is no cloud here
    }
    result = cli("run", write_config(tmp_path, "s3://synthvision-nowhere/run", colours_file), env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: output s3://synthvision-nowhere/run: reading was refused (NoCredentialsError: Unable to locate "
        "credentials); check the credentials (AWS_* environment variables, ~/.aws, or storage_options) and the "
        "permissions on that location"
    ]
    TALLY.bad_inputs += 1


@pytest.mark.slow
def test_weights_that_are_not_tensors_only_are_refused(launcher, tmp_path, colours_file):
    from synthvision.models.generators.glide.tiny import build_tiny_glide, save_glide_folder, tiny_vocabulary

    weights = tmp_path / "glide"
    base, upsampler, _ = build_tiny_glide()
    save_glide_folder(weights, base, upsampler, *tiny_vocabulary())

    class Payload:  # unpickled without weights_only, this would run code
        def __reduce__(self):
            return (os.system, ("echo owned",))

    (weights / "base.pt").write_bytes(pickle.dumps({"w": Payload()}))
    config = write_config(
        tmp_path, str(tmp_path / "run"), colours_file, generator={"backend": "glide", "model": str(weights)}
    )
    expect_one_line_error(launcher, ["run", config], "generator.model", "base.pt is not a tensors-only state dict")


@pytest.mark.slow
def test_a_test_image_that_does_not_decode_is_named(launcher, tmp_path, colours_file):
    test_set = tmp_path / "test"
    for colour in ("red", "green", "blue"):
        (test_set / colour).mkdir(parents=True)
        (test_set / colour / "a.png").write_bytes(Path(__file__).read_bytes()[:64])  # not an image
    config = write_config(
        tmp_path, str(tmp_path / "run"), colours_file, evaluation={"demo_test_set": None, "test_set": str(test_set)}
    )
    expect_one_line_error(launcher, ["run", config], "evaluation.test_set: image", "blue/a.png does not decode")


@pytest.mark.slow
def test_corrupt_shards_among_scoring_inputs_are_quarantined_and_generated_again(finished, launcher, tmp_path):
    # a copy of the finished run, its scores dropped: one tar rotted (same size), one cut short
    config = copy_of_finished(finished, tmp_path)
    copy = tmp_path / "run"
    run = Run(load_config(config))
    for name in run.storage.list("scores"):
        (copy / "scores" / name).unlink()
    (copy / "train" / "report.json").unlink()
    rotted, cut = copy / "shards" / "shard-00001.tar", copy / "shards" / "shard-00004.tar"
    data = bytearray(rotted.read_bytes())
    data[2000] ^= 0xFF
    rotted.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:1500])

    assert launcher.run(["score", config]) == 0  # the stage goes on past them, and names them
    log = tail(launcher.logs / f"cli-{launcher.count:03d}.log", 200_000)
    assert "Traceback" not in log
    assert re.search(r"stage: score, .*done_now: 4, .*quarantined: \['shard-00001', 'shard-00004'\]", log), log
    assert launcher.run(["run", config]) == 0  # generates them again, scores them, trains
    assert re.search(r"stage: generate, .*done_now: 2", tail(launcher.logs / f"cli-{launcher.count:03d}.log", 200_000))
    quarantined = sorted(
        str(p.relative_to(copy)).split("/", 2)[2] for p in (copy / "quarantine").rglob("*") if p.is_file()
    )
    assert quarantined == [
        "shards/shard-00001.manifest.json",
        "shards/shard-00001.tar",
        "shards/shard-00004.manifest.json",
        "shards/shard-00004.tar",
    ]
    check_complete(run)
    assert (copy / "shards" / "shard-00001.tar").read_bytes() == (
        finished[0] / "run" / "shards" / "shard-00001.tar"
    ).read_bytes()
    TALLY.bad_inputs += 2


@pytest.mark.slow
def test_a_ten_thousand_character_unicode_class_name(launcher, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\n" + "猫🐈é" * 3334 + "\n")
    config = write_config(
        tmp_path,
        str(tmp_path / "run"),
        labels,
        shards={"images_per_class": 2, "shard_size": 2},
        evaluation={"demo_test_set": None},
    )
    assert launcher.run(["run", config]) == 0, tail(launcher.logs / f"cli-{launcher.count:03d}.log")
    run = Run(load_config(config))
    check_complete(run)
    assert len(run.prompts[-1].text) > 10_000  # stored whole; the generator cut it to what its encoder takes
    TALLY.bad_inputs += 1
