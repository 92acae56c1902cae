"""`synthvision prefetch` against the offline Hugging Face cache, and the same check before any work
when a command opens a run: a model that is not here is one line naming its field, exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from synthvision.core.config import load_config
from synthvision.core.label_spaces import load_label_space
from tests.conftest import REPO
from tests.flows.test_configs_rehearsal import image_folder
from tests.offline_hub import OPENAI_RN50, SENTENCE_MODEL, STABLE_DIFFUSION

SD_CONFIG = REPO / "configs" / "cifar10_zero_shot_sd15.yaml"
GLIDE_CONFIG = REPO / "configs" / "cifar10_zero_shot.yaml"


def synthvision(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command as a user types it, offline (the session's HF_HUB_OFFLINE=1 and HF_HOME)."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.slow
def test_prefetch_offline_lists_every_cached_model_with_its_size(offline_hub):
    from flows.cli import app

    result = CliRunner().invoke(app, ["prefetch", str(SD_CONFIG)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for field, repo_id in [
        ("prompts.sentence_model.model", SENTENCE_MODEL),
        ("generator.model", STABLE_DIFFUSION),
        ("clip.pretrained", OPENAI_RN50),
    ]:
        line = next(line for line in lines if line.startswith(f"cached  {field}:"))
        assert repo_id in line and offline_hub[repo_id] in line  # the snapshot of the cached commit
        assert re.search(r": [\d,.]+ (B|KB|MB|GB) in /", line)
    assert "HF_HUB_OFFLINE=1" in lines[-1]


@pytest.mark.slow
def test_prefetch_into_a_folder_prints_the_settings_that_name_it(offline_hub, tmp_path):
    from flows.cli import app

    result = CliRunner().invoke(
        app, ["prefetch", str(SD_CONFIG), "--dir", str(tmp_path / "models")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    sets = re.findall(r"--set (\S+)", result.output.splitlines()[-1])
    weights = tmp_path / "models" / "timm--resnet50_clip.openai" / "open_clip_model.safetensors"
    assert f"clip.pretrained={weights}" in sets
    assert "clip.quick_gelu=true" in sets  # the openai tag implied QuickGELU; a file does not
    config = load_config(SD_CONFIG, sets)
    assert config.clip.uses_quick_gelu
    assert (tmp_path / "models" / "stable-diffusion-v1-5--stable-diffusion-v1-5" / "model_index.json").is_file()
    assert config.generator.model == str(tmp_path / "models" / "stable-diffusion-v1-5--stable-diffusion-v1-5")


@pytest.mark.slow
def test_prefetch_offline_names_what_is_missing_and_exits_2(offline_hub):
    result = synthvision("prefetch", str(SD_CONFIG), "--set", "prompts.sentence_model.model=org/not-cached")
    assert result.returncode == 2, result.stderr
    assert "missing prompts.sentence_model.model: org/not-cached" in result.stdout
    assert "cached  generator.model: stable-diffusion-v1-5/stable-diffusion-v1-5" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "error: 1 hub model(s) missing offline (HF_HUB_OFFLINE=1): run this where there is internet"
    ]


@pytest.mark.slow
def test_prefetch_names_an_incomplete_glide_folder(offline_hub):
    result = synthvision("prefetch", str(GLIDE_CONFIG))
    assert result.returncode == 2, result.stderr
    assert "cached  clip.pretrained: openai" in result.stdout
    assert "missing generator.model: /models/glide lacks base.pt, upsample.pt" in result.stdout
    assert result.stderr.strip().splitlines() == ["error: GLIDE's weights folder is incomplete"]


@pytest.mark.slow
def test_a_run_stops_before_any_work_with_one_line_per_missing_model(tmp_path):
    """On a machine whose cache holds none of them (a fresh HF_HOME, offline)."""
    output, test_set = tmp_path / "out", image_folder(tmp_path / "test", load_label_space("cifar10").classes, 1, 0)
    result = synthvision(
        "run",
        str(GLIDE_CONFIG),
        "--set",
        f"output={output}",
        "--set",
        f"evaluation.test_set={test_set}",
        env={"HF_HOME": str(tmp_path / "empty-hf")},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: 3 model(s) this command loads are not on this machine (and the hub cannot be reached):"
    assert lines[1:4] == [
        f"  prompts.sentence_model.model: {SENTENCE_MODEL}: not in the Hugging Face cache",
        f"  clip.pretrained: openai ({OPENAI_RN50}: open_clip_model.safetensors): not in the Hugging Face cache",
        "  generator.model: /models/glide lacks base.pt, upsample.pt, encoder.json.gz, vocab.bpe.gz (README: GLIDE)",
    ]
    assert lines[4] == (
        "fetch hub models where there is internet, into the cache this machine reads: synthvision prefetch "
        f"{GLIDE_CONFIG} --set output={output} --set evaluation.test_set={test_set}"
    )
    assert not (output / "prompts.parquet").exists()  # no work started


@pytest.mark.slow
def test_a_stage_checks_only_the_models_it_loads(tmp_path):
    """generate needs the generator, not CLIP or the sentence model: a node without them may generate."""
    test_set = image_folder(tmp_path / "test", load_label_space("cifar10").classes, 1, 0)
    result = synthvision(
        "generate",
        str(GLIDE_CONFIG),
        "--set",
        f"output={tmp_path / 'out'}",
        "--set",
        f"evaluation.test_set={test_set}",
        env={"HF_HOME": str(tmp_path / "empty-hf")},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:2] == [
        "  generator.model: /models/glide lacks base.pt, upsample.pt, encoder.json.gz, vocab.bpe.gz (README: GLIDE)"
    ]
    assert "clip" not in result.stderr and "sentence_model" not in result.stderr
