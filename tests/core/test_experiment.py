"""Experiment files: what is read, what is refused (one line naming the field), and the cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthvision.core.errors import ConfigError
from synthvision.core.experiment import Metric, cells, load_experiment, metric_value
from synthvision.core.stage_table import stage_hashes
from tests.helpers import write_experiment

BASE = {"run_name": "base", "output": "out", "label_space": "colours.txt", "shards": {"images_per_class": 4}}


def write(folder: Path, **fields) -> Path:
    (folder / "colours.txt").write_text("red\ngreen\nblue\n")
    arms = {"default": {}, "slow": {"training.lr": 0.0001}, "guided": {"generator.guidance_scale": 1.0}}
    return write_experiment(folder, BASE, **{"name": "lr", "arms": arms, **fields})


def test_every_arm_at_every_seed_is_a_cell_with_its_own_output_and_the_shared_stages(tmp_path):
    experiment = load_experiment(write(tmp_path))
    made = cells(experiment)
    assert [cell.name for cell in made] == [
        "default-seed0", "default-seed1", "slow-seed0", "slow-seed1", "guided-seed0", "guided-seed1"
    ]  # fmt: skip
    slow = made[2].config
    assert slow.training.lr == 0.0001 and slow.seed == 0 and slow.run_name == "lr-slow-seed0"
    assert slow.output == str(tmp_path / "experiment" / "runs" / "slow-seed0")
    assert slow.shared_stages == str(tmp_path / "experiment" / "stages")
    assert slow.label_space == str(tmp_path / "colours.txt")  # the base's paths against the base's folder
    hashes = {cell.name: stage_hashes(cell.config) for cell in made}
    # training-only arms share the data of their seed; guidance changes the shards; the seed changes everything
    assert hashes["slow-seed0"]["score"] == hashes["default-seed0"]["score"]
    assert hashes["slow-seed0"]["train"] != hashes["default-seed0"]["train"]
    assert hashes["guided-seed0"]["prompts"] == hashes["default-seed0"]["prompts"]
    assert hashes["guided-seed0"]["generate"] != hashes["default-seed0"]["generate"]
    assert hashes["default-seed1"]["prompts"] != hashes["default-seed0"]["prompts"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"baseline": "nope"}, "baseline: baseline 'nope' is not an arm (default, slow, guided)"),
        ({"arms": {"default": {"seed": 3}}, "baseline": "default"}, "arm default sets seed"),
        ({"seeds": [1, 1]}, "seeds: seeds must be distinct"),
        (
            {"metrics": {"top1": {"path": "training.top1"}}},
            "metrics.top1.path: 'training.top1' must start with a stage",
        ),
        (
            {"metrics": {"x": {"path": "fewshot.results[shots].top1"}}},
            "is neither a field, field[key=value,...] nor field[index]",
        ),
        ({"colour": 1}, "colour: unknown field"),
    ],
)
def test_a_bad_experiment_file_is_one_line_naming_the_field(tmp_path, fields, message):
    with pytest.raises(ConfigError) as caught:
        load_experiment(write(tmp_path, **fields))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"invalid experiment {tmp_path / 'experiment.yaml'}: ")


def test_an_arm_with_a_bad_field_is_named_before_any_work(tmp_path):
    experiment = load_experiment(write(tmp_path, arms={"default": {}, "typo": {"training.lrr": 1}}))
    with pytest.raises(ConfigError, match=r"base.yaml with arm typo: training.lrr: unknown field"):
        cells(experiment)


def test_a_metric_is_read_from_a_report_by_its_path_and_list_items_by_their_fields():
    report = {
        "evaluation": {"tuned_top1": 78.6, "test_set": None},
        "results": [
            {"shots": 1, "strategy": "mix", "top1": 60.0},
            {"shots": 4, "strategy": "mix", "top1": 70.5},
            {"shots": 4, "strategy": "real_only", "top1": 65.0},
        ],
    }
    assert metric_value(report, Metric(path="train.evaluation.tuned_top1")) == 78.6
    assert metric_value(report, Metric(path="fewshot.results[shots=4,strategy=mix].top1")) == 70.5
    assert metric_value(report, Metric(path="fewshot.results[shots=8,strategy=mix].top1")) is None
    assert metric_value(report, Metric(path="fewshot.results[2].top1")) == 65.0
    assert metric_value(report, Metric(path="fewshot.results[3].top1")) is None
    assert metric_value(report, Metric(path="train.evaluation.test_set")) is None
    assert metric_value({}, Metric(path="train.evaluation.tuned_top1")) is None


def test_set_overrides_change_the_base_of_every_arm_and_an_arm_still_wins(tmp_path):
    experiment = load_experiment(write(tmp_path))
    made = cells(experiment, ["training.epochs=7", "training.lr=0.5", "evaluation.test_set=test.tar"])
    assert {cell.config.training.epochs for cell in made} == {7}
    assert [cell.config.training.lr for cell in made if cell.arm == "slow"] == [0.0001, 0.0001]
    assert made[0].config.training.lr == 0.5
    assert made[0].config.evaluation.test_set == str(Path.cwd() / "test.tar")  # a --set path: the working directory's


def test_a_sweep_makes_an_arm_per_value(tmp_path):
    sweeps = {"images per class": {"field": "filter.first_per_class", "values": [1, 2, 4]}}
    experiment = load_experiment(write(tmp_path, sweeps=sweeps, baseline="first_per_class=4"))
    assert list(experiment.arms) == ["default", "slow", "guided", *(f"first_per_class={k}" for k in (1, 2, 4))]
    made = {cell.name: cell.config for cell in cells(experiment)}
    assert made["first_per_class=2-seed1"].filter.first_per_class == 2
    with pytest.raises(ConfigError, match=r"sweeps.x.values: List should have at least 2 items"):
        load_experiment(write(tmp_path, sweeps={"x": {"field": "training.lr", "values": [1]}}))
    with pytest.raises(ConfigError, match="sweep 'x' makes arm 'lr=1', which the file names already"):
        load_experiment(
            write(
                tmp_path, arms={"lr=1": {}}, baseline="lr=1", sweeps={"x": {"field": "training.lr", "values": [1, 2]}}
            )
        )


def test_the_file_s_overrides_are_set_for_every_arm_before_the_arm_s_own(tmp_path):
    experiment = load_experiment(write(tmp_path, overrides={"training.lr": 0.5, "shards.images_per_class": 8}))
    made = {cell.name: cell.config for cell in cells(experiment)}
    assert made["default-seed0"].training.lr == 0.5 and made["slow-seed0"].training.lr == 0.0001
    assert {config.shards.images_per_class for config in made.values()} == {8}
    with pytest.raises(ConfigError, match="overrides: output: the experiment sets it for each cell"):
        load_experiment(write(tmp_path, overrides={"output": "elsewhere"}))


def test_every_shipped_experiment_file_is_read_and_every_cell_is_valid():
    files = sorted((Path(__file__).parents[2] / "configs" / "experiments").glob("*.yaml"))
    assert len(files) >= 5
    for file in files:
        experiment = load_experiment(file)
        made = cells(experiment)
        assert len(made) == len(experiment.arms) * len(experiment.seeds) and len(experiment.seeds) >= 5, file
        assert experiment.baseline in experiment.arms, file


def test_a_named_stages_folder_is_read_against_the_file_and_given_to_every_cell(tmp_path):
    default = load_experiment(write(tmp_path))
    assert default.stages_folder == str(tmp_path / "experiment" / "stages") and not default.stages_apart
    named = load_experiment(write(tmp_path, stages="../shared-stages"))
    assert named.stages_folder == str(tmp_path.parent / "shared-stages") and named.stages_apart
    assert {cell.config.shared_stages for cell in cells(named)} == {str(tmp_path.parent / "shared-stages")}
