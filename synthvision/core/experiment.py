"""An experiment file: a base run config, named arms (each a set of field overrides), seeds, the
metrics to compare and the arm they are compared against; and its cells, one run config per arm and
seed.

Every cell writes its own output (`<output>/runs/<arm>-seed<seed>/`), and every stage's outputs go
under `<stages>/<stage>/<stage hash>/` (`RunConfig.shared_stages`; `stages` is `<output>/stages` unless
the file names another folder): cells whose configs agree on a stage's hash (an arm that changes only
training, at the same seed) find that stage committed and do not compute it again. Experiments that
name one `stages` folder share it the same way: the shipped toy experiments all read the demo's data
at seeds 0-4 from one copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from synthvision.core.config import (
    RunConfig,
    format_validation_error,
    parse_config,
    read_config_file,
    read_yaml_mapping,
    set_field,
)
from synthvision.core.errors import ConfigError
from synthvision.core.paths import resolve_paths, resolved
from synthvision.core.section import Section
from synthvision.core.stage_table import NAMES

# the fields a cell sets itself: an arm that sets them would write over another cell's
CELL_FIELDS = ("seed", "output", "run_name", "shared_stages", "base_dir")
_SELECTOR = re.compile(r"^(?P<name>[A-Za-z_]\w*)(\[(?P<where>[^\]]+)\])?$")


class Metric(Section):
    """A number each cell's reports hold, named by its path into a stage's `report.json`:
    `train.evaluation.tuned_top1`; a list item picked by its fields, `fewshot.results[shots=4,strategy=mix].top1`,
    or by its place, `transfer.results[0].top1`."""

    path: str = Field(min_length=1)
    higher_is_better: bool = True

    @field_validator("path")
    @classmethod
    def _a_stage_and_a_field(cls, value: str) -> str:
        stage, *fields = value.split(".")
        if stage not in NAMES or not fields:
            raise ValueError(f"{value!r} must start with a stage ({', '.join(NAMES)}) and name a field of its report")
        for part in fields:
            match = _SELECTOR.match(part)
            where = None if match is None else match["where"]
            if not match or (where is not None and not where.isdigit() and not all("=" in p for p in where.split(","))):
                raise ValueError(f"{value!r}: {part!r} is neither a field, field[key=value,...] nor field[index]")
        return value

    @property
    def stage(self) -> str:
        return self.path.split(".")[0]


class Sweep(Section):
    """An arm family over one numeric setting: an arm `<field's last part>=<value>` per value, drawn
    in the report as a line with its 95% band (shots, guidance, images per class)."""

    field: str = Field(min_length=1, pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
    values: list[float | int] = Field(min_length=2)

    def arm(self, value: float | int) -> str:
        return f"{self.field.split('.')[-1]}={value}"


class ExperimentConfig(Section):
    name: str = Field(min_length=1, pattern=r"^[\w.-]+$")
    base: str = Field(min_length=1, description="the run config every arm starts from (relative to this file)")
    output: str = Field(min_length=1, description="cells under runs/, the report; shared stage outputs under stages/")
    stages: str | None = Field(
        None,
        description="where the stages' outputs go, by stage hash (default: <output>/stages); experiments that "
        "name one folder compute each stage hash they share once",
    )
    seeds: list[int] = Field(min_length=1, description="replicates: each cell's `seed`")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="{dotted.field: value} set on the base config for every arm"
    )
    arms: dict[str, dict[str, Any]] = Field(min_length=1, description="name -> {dotted.field: value} overrides")
    baseline: str
    metrics: dict[str, Metric] = Field(min_length=1)
    sweeps: dict[str, Sweep] = Field(default_factory=dict, description="arm families over a numeric setting")
    base_dir: str | None = None  # the experiment file's folder (set on load)

    @property
    def stages_folder(self) -> str:
        return (self.stages or f"{self.output.rstrip('/')}/stages").rstrip("/")

    @property
    def stages_apart(self) -> bool:
        """Whether the stage outputs lie outside the experiment's output (then they need a lock of their own)."""
        return not self.stages_folder.startswith(self.output.rstrip("/") + "/")

    @model_validator(mode="before")
    @classmethod
    def _swept_arms(cls, data: Any) -> Any:
        """Each sweep's arms join `arms` (after those named there), so that they are checked, run and
        reported like any other."""
        if not isinstance(data, dict) or not isinstance(data.get("sweeps"), dict):
            return data
        arms = dict(data.get("arms") or {})
        for name, raw in data["sweeps"].items():
            try:
                sweep = Sweep.model_validate(raw)
            except ValidationError:
                continue  # reported with its field's name by the sweeps field itself
            for value in sweep.values:
                if sweep.arm(value) in arms:
                    raise ValueError(f"sweep {name!r} makes arm {sweep.arm(value)!r}, which the file names already")
                arms[sweep.arm(value)] = {sweep.field: value}
        return {**data, "arms": arms}

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError("seeds must be distinct and >= 0")
        return value

    @field_validator("arms")
    @classmethod
    def _arms_leave_cell_fields(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for arm, overrides in value.items():
            if not re.match(r"^[\w.=-]+$", arm):
                raise ValueError(f"arm name {arm!r}: use letters, digits, '-', '_', '.' and '='")
            for key in overrides or {}:
                if key.split(".")[0] in CELL_FIELDS:
                    raise ValueError(f"arm {arm} sets {key}: the experiment sets it for each cell")
        return {arm: overrides or {} for arm, overrides in value.items()}

    @field_validator("overrides")
    @classmethod
    def _overrides_leave_cell_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key.split(".")[0] in CELL_FIELDS:
                raise ValueError(f"{key}: the experiment sets it for each cell")
        return value

    @field_validator("baseline")
    @classmethod
    def _baseline_is_an_arm(cls, value: str, info: ValidationInfo) -> str:
        arms = info.data.get("arms")
        if arms is not None and value not in arms:
            raise ValueError(f"baseline {value!r} is not an arm ({', '.join(arms)})")
        return value


@dataclass(frozen=True)
class Cell:
    """One arm at one seed: a run config of its own."""

    arm: str
    seed: int
    config: RunConfig

    @property
    def name(self) -> str:
        return f"{self.arm}-seed{self.seed}"


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read an experiment file; a problem raises a one-line `ConfigError` naming the file and field."""
    data, base_dir = read_yaml_mapping(path, "experiment")
    for field in ("base", "output", "stages"):
        if isinstance(data.get(field), str):
            data[field] = resolved(data[field], base_dir, always=True)
    try:
        return ExperimentConfig.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, str(path), "experiment")) from None


def cells(experiment: ExperimentConfig, overrides: list[str] | None = None) -> list[Cell]:
    """Every arm at every seed, arm by arm in the file's order, each config validated (an arm's bad
    field is one line naming the arm); `overrides` (`key.path=value`, as `--set` gives them) change
    the base config of every arm."""
    base, base_dir = read_config_file(experiment.base, overrides)
    root = experiment.output.rstrip("/")
    made = []
    folder = Path(experiment.base_dir or ".")
    common = _with_overrides(base, "every arm", experiment.overrides, folder)
    for arm, changes in experiment.arms.items():
        data = _with_overrides(common, f"arm {arm}", changes, folder)
        for seed in experiment.seeds:
            cell = {
                **data,
                "seed": seed,
                "run_name": f"{experiment.name}-{arm}-seed{seed}",
                "output": f"{root}/runs/{arm}-seed{seed}",
                "shared_stages": experiment.stages_folder,
                "base_dir": str(base_dir),
            }
            made.append(Cell(arm, seed, parse_config(cell, source=f"{experiment.base} with arm {arm}")))
    return made


def _with_overrides(base: dict[str, Any], whose: str, overrides: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of a config mapping with `overrides` set (relative paths in them against the experiment
    file's folder); `whose` names them in an error."""
    data = yaml.safe_load(yaml.safe_dump(base))  # a deep copy
    for key, value in overrides.items():
        set_field(data, [part for part in key.split(".") if part], value, shown=f"{whose}'s {key}")
    return resolve_paths(data, folder, only=tuple(overrides))


def metric_value(report: dict[str, Any], metric: Metric) -> float | None:
    """The metric's number in its stage's report (as `report.json` holds it); None where the report
    has no such number (a test set not configured, a shot count not run)."""
    node: Any = report
    for part in metric.path.split(".")[1:]:
        match = _SELECTOR.match(part)
        assert match is not None  # checked when the file was read
        node = node.get(match["name"]) if isinstance(node, dict) else None
        if match["where"] is not None:
            node = _pick(node, match["where"])
        if node is None:
            return None
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def _pick(items: Any, where: str) -> Any:
    """The list's item at index `where`, or its one item whose fields equal `key=value,...` (values
    compared as YAML reads them); None where there is no such item."""
    if where.isdigit():
        return items[int(where)] if isinstance(items, list) and int(where) < len(items) else None
    wanted = {key.strip(): yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in where.split(","))}
    found = [
        item for item in items or [] if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())
    ]
    return found[0] if len(found) == 1 else None
