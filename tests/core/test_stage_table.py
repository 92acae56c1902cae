"""The table of stages (synthvision/core/stage_table.py) and everything derived from it or checked against it:
stage hashes, status, the CLI's commands, the flows and their deployments."""

from __future__ import annotations

import importlib

import pytest
import yaml

from synthvision.core.config import RunConfig, parse_config
from synthvision.core.stage_table import NAMES, STAGES, enabled, lineage, stage, stage_hash
from synthvision.stages.units import ensure
from tests.conftest import REPO, tiny_config

EVERY_SECTION = {
    "output": "/tmp/unused",
    "label_space": "fashion-mnist",
    "seed": 3,
    "fewshot": {"train_set": "pool.tar", "shots": [16], "real_guidance": {"enabled": True}},
    "quality": {},
    "pretrain": {},
    "transfer": {"label_space": "fashion-mnist", "train_set": "pool.tar", "test_set": "test.tar"},
    "scratch": {"real_train_set": "pool.tar", "real_per_class": [1]},
}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # recorded from the hand-written stage_hash the table replaced: committed outputs stay committed.
        # score, train and fewshot changed once since, on purpose: with a default config they now score
        # and train as the paper's code does (the zero-shot template ensemble, CF's own prompt, 800 images
        # per class, SCE on few-shot's synthetic part), so their earlier outputs are not this config's.
        # Switches set to the earlier behaviour give the earlier hashes (test below). quality is new
        # (its hash recorded when it came).
        (
            {"output": "/tmp/unused"},
            "b9f34c6aaa7c08d0 34d676e5e59ead01 550f510de583246b 01428d022b0a33d7 "
            "9c05a8d92dcede15 d8cf034ba2436aaa a8e53f463030d75c aa6e780f9a387fc3 2369d8d7352ae14a",
        ),
        (
            EVERY_SECTION,
            "59a9b7c2a41f5743 6d9a26d49480b9ea 98d16544752cf3d2 ec28df4c2957adad "
            "9577e95d2444f039 c31729653b0bea66 77489b47873e9fe5 1524056e09c6b2a5 61d55ba3d0b8c2b4",
        ),
    ],
    ids=["defaults", "every-section"],
)
def test_stage_hashes_are_those_of_every_earlier_release(config, expected):
    config = RunConfig.model_validate(config)
    assert " ".join(stage_hash(config, name) for name in NAMES) == expected


def test_stage_hashes_change_only_downstream_of_the_edit():
    base = parse_config({})
    edits = {
        "training": parse_config({"training": {"lr": 1e-3}}),
        "generator": parse_config({"generator": {"guidance_scale": 2.0}}),
        "filter.clip_filter": parse_config({"filter": {"clip_filter": False}}),
        "runtime": parse_config(
            {
                "generator": {"device": "cpu", "batch_size": 64, "workers": 0, "seconds_per_batch": 1.0},
                "clip": {"workers": 5, "seconds_per_batch": 1.0},
                "orchestration": {"retries": 9},
            }
        ),
    }
    changed = {
        edit: [name for name in NAMES if stage_hash(base, name) != stage_hash(config, name)]
        for edit, config in edits.items()
    }
    assert changed == {
        "training": ["train"],
        "generator": ["generate", "score", "train", "fewshot", "quality", "pretrain", "transfer", "scratch"],
        "filter.clip_filter": ["train", "fewshot", "quality"],  # the scores hold the verdict, not the choice to drop
        "runtime": [],
    }


def test_the_table_is_a_dag_in_order_and_names_real_config_sections():
    seen: set[str] = set()
    for row in STAGES:
        assert set(row.upstream) <= seen, f"{row.name} reads a stage listed after it"
        seen.add(row.name)
        assert row.optional is None or row.optional in RunConfig.model_fields
        keys = [part.key.split(".")[0] for part in row.parts]  # a section, or one field of it
        assert all(key in RunConfig.model_fields or key == "real_guidance" for key in keys)
    assert [s.name for s in lineage("transfer")] == ["prompts", "generate", "pretrain", "transfer"]
    assert [s.name for s in STAGES if s.versioned] == ["prompts", "generate", "score"]
    with pytest.raises(ValueError, match="unknown stage 'tune'.*prompts, generate"):
        stage("tune")


def test_every_stage_has_a_command_and_a_flow_and_every_flow_a_deployment():
    from flows import stages as stage_flows
    from flows.cli import app
    from flows.deployments import FILE, prefect_yaml
    from flows.synthesize import synthesize

    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert set(NAMES) <= commands
    flows = {"synthesize": synthesize} | {name: getattr(stage_flows, f"{name}_flow") for name in NAMES}
    assert all(flow.name == name for name, flow in flows.items())

    assert FILE.read_text() == prefect_yaml(), "deployments/prefect.yaml is stale: run `python -m flows.deployments`"
    deployments = yaml.safe_load(FILE.read_text())["deployments"]
    deployed = {(d["name"], d["entrypoint"]) for d in deployments}
    entrypoints = {"synthesize": "flows/synthesize.py:synthesize"} | {
        name: f"flows/stages.py:{name}_flow" for name in NAMES
    }
    assert deployed == {(pool, entry) for pool in ("local", "k8s") for entry in entrypoints.values()}


def test_status_lists_every_stage_the_config_enables(tmp_path, colours_file):
    from synthvision.run import Run

    config = tiny_config(tmp_path / "run", colours_file, pretrain={"image_size": 32}, scratch={"real_per_class": []})
    rows = Run(config).status()
    assert (
        [row.stage for row in rows]
        == [s.name for s in enabled(config)]
        == ["prompts", "generate", "score", "train", "pretrain", "scratch"]
    )
    shards = rows[1].planned
    assert [(row.planned, row.committed) for row in rows] == [(1, 0), (shards, 0), (shards, 0), (1, 0), (1, 0), (1, 0)]


def test_architecture_md_shows_the_table_as_it_is_and_every_stage_has_its_file():
    def commits(row) -> str:
        if row.per_shard:
            return f"`{row.output}` per shard"
        return f"`{row.output if not row.folder else row.report_file}`"

    expected = [
        f"| {row.name} | {', '.join(row.upstream) or 'config'} | {commits(row)} | `stages/{row.name}.py` |"
        for row in STAGES
    ]
    lines = [line.strip() for line in (REPO / "ARCHITECTURE.md").read_text().splitlines()]
    start = lines.index("| stage | reads | commits | file |") + 2
    shown = [line for line in lines[start : start + len(expected) + 1] if line.startswith("|")]
    assert shown == expected
    for row in STAGES:  # a stage is a row and a file: what is committed, the work, what it shows; and its tests
        module = importlib.import_module(f"synthvision.stages.{row.name}")
        assert all(callable(getattr(module, name)) for name in ("committed", row.work_function, "page")), row.name
        assert (REPO / "tests" / "stages" / f"test_{row.name}.py").is_file(), f"tests/stages has no test of {row.name}"


def test_architecture_md_lists_every_folder_of_the_library():
    text = (REPO / "ARCHITECTURE.md").read_text()
    folders = sorted(p.name for p in (REPO / "synthvision").iterdir() if (p / "__init__.py").exists())
    assert [name for name in folders if f"\n  {name}/" not in text] == []


def test_readme_output_layout_shows_where_every_stage_commits():
    layout = (REPO / "README.md").read_text().split("## Output layout", 1)[1].split("\n## ", 1)[0]
    paths = [line.split()[0] for line in layout.splitlines() if line.startswith("OUTPUT/")]
    for row in STAGES:
        committed = f"OUTPUT/{row.report_file if row.folder and not row.per_shard else row.output}"
        assert any(path.startswith(committed) for path in paths), f"README's output layout lacks {committed}"


def test_switches_set_to_synthvisions_earlier_behaviour_give_the_earlier_hashes():
    """configs/demo.yaml names its templates for both heads and keeps every passing image; with GLIDE's
    upsampler sampled ancestrally, as before it followed glide-text2im's DDIM, its stage hashes are
    those recorded when its paths became relative to its own folder and its test set was identified by
    its content (paths had been written relative to the repository root and hashed as written:
    17ef0c9762968035, 5892700d88179877, 30634e712c5cb272)."""
    from synthvision.core.config import load_config

    earlier = load_config(REPO / "configs" / "demo.yaml", ["generator.glide.upsample_sampler=ancestral"])
    hashes = {name: stage_hash(earlier, name) for name in ("generate", "score", "train")}
    assert hashes == {"generate": "207c1fb4c53a8ef7", "score": "9c8a80e10691fbef", "train": "3d8bc037d8a1a527"}
    assert stage_hash(load_config(REPO / "configs" / "demo.yaml"), "generate") != hashes["generate"]  # DDIM now


def test_relative_paths_resolve_against_the_config_file_and_hash_the_same_from_anywhere(tmp_path, monkeypatch):
    """A config's relative paths are relative to its folder: from any working directory, and in a
    copy of the checkout elsewhere, it names the same files and has the same stage hashes; a path
    given with --set is relative to the working directory."""
    import shutil

    from synthvision.core.config import load_config

    here = load_config(REPO / "configs" / "demo.yaml")
    assert here.generator.model == str(REPO / "synthvision/data/toy/glide")
    assert here.clip.model == f"local-dir:{REPO / 'synthvision/data/toy/clip'}"
    assert here.evaluation.test_set == str(REPO / "synthvision/data/toy/fashion-mnist/test-subset.tar")
    assert here.output == str(REPO / "runs/demo") and here.label_space == "fashion-mnist"
    copy = tmp_path / "elsewhere"
    (copy / "configs").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "demo.yaml", copy / "configs")
    (copy / "synthvision").symlink_to(REPO / "synthvision")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    there = load_config(copy / "configs" / "demo.yaml", ["evaluation.test_set=local/test.tar"])
    assert there.generator.model == str(copy / "synthvision/data/toy/glide")
    assert there.evaluation.test_set == str(tmp_path / "cwd/local/test.tar")
    assert stage_hash(there, "generate") == stage_hash(here, "generate")
    assert stage_hash(there, "score") == stage_hash(here, "score")
    there = load_config(copy / "configs" / "demo.yaml")
    assert {row.name: stage_hash(there, row.name) for row in STAGES} == {
        row.name: stage_hash(here, row.name) for row in STAGES
    }


def test_b_prompts_ignore_les_settings_and_le_keeps_its_earlier_hash_with_its_earlier_sampling():
    def prompts_hash(**prompts) -> str:
        return stage_hash(RunConfig.model_validate({"prompts": prompts}), "prompts")

    assert (
        prompts_hash() == prompts_hash(oversample=7, sentence_model={"top_p": 0.5}) == "b9f34c6aaa7c08d0"
    )  # the defaults row above
    earlier = {"oversample": 0, "require_class_name": True, "sentence_model": {"max_new_tokens": 32, "top_p": 0.9}}
    assert prompts_hash(strategy="language_enhancement", **earlier) == "303f6e2243e2c2a5"  # recorded before
    assert prompts_hash(strategy="language_enhancement") != "303f6e2243e2c2a5"  # the paper's sampling now


def test_quick_gelu_enters_the_score_hash_only_where_it_is_on():
    def score_hash(**clip) -> str:
        return stage_hash(RunConfig.model_validate({"clip": {"model": "RN50", **clip}}), "score")

    # OpenAI's weights now run with the QuickGELU they were trained with: other scores, another hash
    assert score_hash(pretrained="openai") != score_hash(pretrained="openai", quick_gelu=False)
    # where nothing changed, neither did the hash (outputs scored before the switch stay valid)
    assert score_hash() == score_hash(quick_gelu=False)
    assert score_hash(quick_gelu=True) != score_hash()


def test_image_encoding_enters_the_generate_hash_only_where_it_changes_the_bytes():
    def generate_hash(**generator) -> str:
        return stage_hash(RunConfig.model_validate({"generator": generator}), "generate")

    # the encoder settings every shard had before they were fields: no entry, earlier shards stay valid
    assert generate_hash() == generate_hash(png_compress_level=6, image_quality=50)  # quality: not png's
    assert generate_hash(image_format="jpg") == generate_hash(image_format="jpg", image_quality=95)
    assert generate_hash(image_format="jpg", image_quality=80) != generate_hash(image_format="jpg")
    assert generate_hash(png_compress_level=1) != generate_hash()
    assert generate_hash(image_format="webp", image_quality=80) != generate_hash(image_format="webp")
    assert generate_hash(image_format="webp-lossless", image_quality=10) == generate_hash(image_format="webp-lossless")


def test_top_up_rounds_enter_the_generate_hash_with_the_signal_they_follow():
    def generate_hash(fewshot=None, **top_up) -> str:
        shards = {"top_up": {"max_per_class": 4000, **top_up}} if top_up else {}
        return stage_hash(RunConfig.model_validate({"shards": shards, "fewshot": fewshot}), "generate")

    adaptive = {"policy": "adaptive", "budget_per_class": 3000}
    fewshot = {"train_set": "pool.tar", "shots": [1, 2]}
    signal = {**adaptive, "signal": "fewshot", "shots": 2}
    # quota and the zero-shot signal: as they hashed before the few-shot signal was a field
    assert generate_hash(**adaptive) == generate_hash(**adaptive, signal="confidence") != generate_hash()
    assert generate_hash(**adaptive) != generate_hash(max_per_class=4000)
    # the few-shot signal follows the shots and the head's training, not the fewshot stage's own arms
    assert generate_hash(fewshot, **signal) != generate_hash(fewshot, **adaptive)
    assert generate_hash(fewshot, **signal) != generate_hash(fewshot, **{**signal, "shots": 1})
    assert generate_hash(fewshot, **signal) != generate_hash({**fewshot, "epochs": 5}, **signal)
    assert generate_hash(fewshot, **signal) == generate_hash({**fewshot, "strategies": ["mix"], "shots": [4]}, **signal)
    assert generate_hash(fewshot, **adaptive) == generate_hash({**fewshot, "epochs": 5}, **adaptive)


def test_a_label_file_is_identified_by_its_class_names_not_its_path(tmp_path):
    """Edited in place (yellow -> purple): a new label space, so a rerun refuses to reuse the output's
    prompts and shards. The same names under another path, with a comment: the same label space."""
    from synthvision.core.errors import ConfigError
    from synthvision.run import Run

    colours = tmp_path / "colours.txt"
    colours.write_text("red\nyellow\n")
    config = tiny_config(tmp_path / "out", colours)
    elsewhere = tmp_path / "copy" / "other-name.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("# the same two colours\nred\n\nyellow\n")
    assert stage_hash(tiny_config(tmp_path / "out", elsewhere), "generate") == stage_hash(config, "generate")
    run = Run(config)
    with run.writing():
        ensure(run, "prompts")
    before = stage_hash(config, "prompts")
    colours.write_text("red\npurple\n")
    assert stage_hash(config, "prompts") != before
    with pytest.raises(ConfigError, match="holds the prompts, generate, score data of another config"):
        with Run(config).writing():
            pass


def test_a_test_set_is_identified_by_its_content_not_its_path(tmp_path, colours_file):
    """Edited in place: a new test set (train's report is stale); copied elsewhere: the same one."""
    from tests.conftest import tiny_config

    tar = tmp_path / "test.tar"
    tar.write_bytes(b"first version of the test images")
    folder = tmp_path / "images"
    (folder / "red").mkdir(parents=True)
    (folder / "red" / "a.png").write_bytes(b"12345")

    def train_hash(test_set) -> str:
        config = tiny_config(tmp_path / "run", colours_file)
        config = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={
            "test_set": str(test_set), "demo_test_set": None})})  # fmt: skip
        return stage_hash(config, "train")

    before = train_hash(tar)
    copy = tmp_path / "elsewhere.tar"
    copy.write_bytes(tar.read_bytes())
    assert train_hash(copy) == before
    tar.write_bytes(b"second version of the test images")
    assert train_hash(tar) != before
    in_folder = train_hash(folder)
    (folder / "red" / "b.png").write_bytes(b"678")  # a folder: by its files' names and sizes
    assert train_hash(folder) != in_folder
