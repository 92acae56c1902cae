"""The typed run config: one YAML file, overridable from the CLI, validated before any work starts.

Every stage's outputs are tagged with that stage's hash (`synthvision.core.stage_table.stage_hash`), computed only
from the fields that change those outputs. Changing the training learning rate therefore reuses every
generated shard and every CLIP score, while changing the generator's guidance scale regenerates the
shards and everything downstream. Fields that only change *how* work runs (device, batch sizes,
retries, workers) are in no hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from synthvision.core.data_config import ClipConfig, FilterConfig, GeneratorConfig, PromptsConfig, ShardsConfig
from synthvision.core.errors import ConfigError
from synthvision.core.learning_config import (
    EvaluationConfig,
    FewShotConfig,
    PretrainConfig,
    QualityConfig,
    ScratchConfig,
    TrainingConfig,
    TransferConfig,
)
from synthvision.core.paths import resolve_paths, resolved
from synthvision.core.section import Section


class OrchestrationConfig(Section):
    """How Prefect runs the shard tasks; changes nothing in the outputs."""

    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(10.0, ge=0, description="first retry delay; doubles each retry")
    retry_jitter: float = Field(0.5, ge=0, description="random extra delay, as a fraction of the delay")
    max_workers: int = Field(2, gt=0, description="shard tasks running at once in one flow run")
    max_in_flight: int = Field(64, gt=0, description="shard futures submitted but not finished, per flow run")
    shards_per_flow_run: int = Field(
        500, gt=0, description="shards per wave sub-flow (Prefect slows past thousands of task runs per flow run)"
    )
    engine: Literal["threads", "processes", "dask"] = Field(
        "threads",
        description="where shard tasks run: threads of the flow process (max_workers of them); one worker "
        "process per entry of `devices`, each bound to its device; or a Dask cluster",
    )
    devices: list[str] = Field(
        default_factory=lambda: ["auto"],
        description=(
            "engine 'processes': one worker process per entry ('auto': one per CUDA GPU here, or one CPU worker)"
        ),
    )
    dask_address: str | None = Field(
        None, description="engine 'dask': scheduler address; empty starts a local cluster of max_workers processes"
    )
    gpu_limit: str | None = Field(
        "gpu",
        min_length=1,
        description="Prefect global concurrency limit a model task holds one slot of while it computes; "
        "null: none (one machine: the flow run's own workers bound model work, and a SQLite server is spared "
        "the slot writes)",
    )
    gpu_slots: int | None = Field(
        None,
        gt=0,
        description="set the gpu_limit to this many slots before running; empty: create it if missing with one slot "
        "per local worker (len(devices) or max_workers) and otherwise leave the operator's setting",
    )
    lock_ttl_s: float = Field(
        300.0,
        gt=0,
        description="a run's lock on its output expires this long after its holder's last heartbeat "
        "(a holder on this host that is gone loses it at once)",
    )
    lock_wait_s: float = Field(
        86400.0, ge=0, description="how long a run waits for another run writing the same output"
    )
    new_version: bool = Field(
        False,
        description="let this config replace the data of a different config in the output (`--new-version`); "
        "without it such a run is refused, so that one output never mixes two configs' shards",
    )
    gpu_lease_s: float = Field(
        60.0,
        ge=60,
        description="lease on a held gpu slot, renewed while its task lives: a killed worker's slot returns "
        "to the pool within this plus Prefect's 15 s lease sweep (60 is Prefect's minimum)",
    )

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one device (or 'auto')")
        return value

    @model_validator(mode="after")
    def _address_needs_dask(self) -> OrchestrationConfig:
        if self.dask_address and self.engine != "dask":
            raise ValueError(f"dask_address is set but engine is {self.engine!r}: set engine: dask")
        return self


def _flatten_keys(options: dict[str, Any]) -> list[str]:
    keys = []
    for key, value in options.items():
        keys.append(str(key))
        if isinstance(value, dict):
            keys += _flatten_keys(value)
    return keys


class RunConfig(Section):
    run_name: str = Field("synthvision", min_length=1)
    output: str = Field("./runs/synthvision", min_length=1, description="any fsspec URL")
    shared_stages: str | None = Field(
        None,
        description="a folder (on the output's storage) that keeps each stage's outputs under "
        "`<stage>/<stage hash>/`, shared by every run that names it: runs that agree on a stage's hash "
        "compute it once (an experiment's arms and seeds use it)",
    )
    base_dir: str | None = Field(
        None, description="the config file's folder, which its relative paths were resolved against (set on load)"
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for output and test set (e.g. endpoint_url); never credentials",
    )
    seed: int = Field(0, ge=0)
    label_space: str = Field(
        "cifar10", description="built-in name (the 17 datasets of Table 1, fashion-mnist) or a file"
    )
    prompts: PromptsConfig = PromptsConfig()
    generator: GeneratorConfig = GeneratorConfig()
    shards: ShardsConfig = ShardsConfig()
    clip: ClipConfig = ClipConfig()
    filter: FilterConfig = FilterConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    fewshot: FewShotConfig | None = Field(None, description="few-shot runs over real shots; the `fewshot` command")
    quality: QualityConfig | None = Field(None, description="the data-quality report; the `quality` command")
    pretrain: PretrainConfig | None = Field(None, description="the `pretrain` command")
    transfer: TransferConfig | None = Field(None, description="the `transfer` command (after pretrain)")
    scratch: ScratchConfig | None = Field(None, description="the `scratch` command")
    orchestration: OrchestrationConfig = OrchestrationConfig()

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Configs are recorded in run.json and Prefect parameters: credentials must stay in the
        environment (AWS_ACCESS_KEY_ID, ...) or a credentials file, never here."""
        for key in _flatten_keys(value):
            if any(word in key.lower() for word in ("key", "secret", "token", "password", "credential")):
                raise ValueError(f"{key!r} looks like a credential: set it in the environment, not in the config")
        return value

    @field_validator("output", "shared_stages")
    @classmethod
    def _absolute_local_output(cls, value: str | None) -> str | None:
        """A local output path is made absolute when the config is read (a file's, against its folder,
        by `load_config`; one given in Python, against the working directory): the run and its records
        then name one place, whatever the working directory of the process using them."""
        return resolved(value, Path.cwd(), always=True)

    @model_validator(mode="after")
    def _top_up_has_its_inputs(self) -> RunConfig:
        """Quota mode tops classes up to the images CF keeps per class: it needs CF and that number;
        the few-shot signal needs the real pool its shots are drawn from."""
        top_up = self.shards.top_up
        if top_up is not None and top_up.policy == "quota" and not (self.filter.clip_filter and self.filter.per_class):
            raise ValueError(
                "shards.top_up generates until each class has filter.per_class images passing CF: "
                "it needs filter.clip_filter on and filter.per_class set"
            )
        if top_up is not None and top_up.signal == "fewshot" and self.fewshot is None:
            raise ValueError(
                "shards.top_up.signal fewshot measures each class's error on real shots: it needs a fewshot "
                "section (fewshot.train_set)"
            )
        return self

    @model_validator(mode="after")
    def _workers_own_their_devices(self) -> RunConfig:
        """With one worker process per device, each worker's models go on its own device, which is
        what `device: auto` means there; a fixed device would put every worker on the same one."""
        if self.orchestration.engine == "processes":
            sections = {
                "prompts.sentence_model": self.prompts.sentence_model,
                "generator": self.generator,
                "clip": self.clip,
                "training": self.training,
            }
            for name, section in sections.items():
                if section.device != "auto":
                    raise ValueError(
                        f"{name}.device is {section.device!r}, but engine 'processes' binds each worker to one "
                        "of orchestration.devices: use device: auto"
                    )
        return self


def format_validation_error(error: ValidationError, source: str, kind: str = "config") -> str:
    """One line naming every bad field of a `kind` file (`source`)."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling against the config reference in README.md)"
        problems.append(f"{field}: {message}")
    return f"invalid {kind} {source}: " + "; ".join(problems)


def _parse_override(override: str) -> tuple[list[str], Any]:
    if "=" not in override:
        raise ConfigError(f"invalid override {override!r}: expected KEY=VALUE, e.g. training.epochs=5")
    key, raw = override.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"invalid override {override!r}: empty key")
    return path, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML scalars) to a nested config dict."""
    for override in overrides:
        set_field(data, *_parse_override(override), shown=f"override {override!r}")
    return data


def set_field(data: dict[str, Any], path: list[str], value: Any, shown: str) -> None:
    """Set the field at `path` (`["training", "lr"]`) of a nested config dict; `shown` names what set
    it in the error when a part of the path is not a section."""
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"invalid {shown}: {part} is not a section")
        node = child
    node[path[-1]] = value


def read_yaml_mapping(path: str | Path, kind: str = "config") -> tuple[dict[str, Any], Path]:
    """A YAML file's mapping and the file's folder; a missing file, bad YAML or anything but a mapping
    raises one-line `ConfigError` naming the `kind` of file and the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{kind} file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} file {path} must hold a mapping of fields, not {type(data).__name__}")
    return data, path.expanduser().absolute().parent


def read_config_file(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], Path]:
    """A YAML config file's mapping with CLI overrides applied, its relative paths made absolute (the
    file's against its folder, the overrides' against the working directory), and that folder."""
    data, base = read_yaml_mapping(path)
    data = resolve_paths(data, base)
    if overrides:
        overridden = tuple(".".join(_parse_override(override)[0]) for override in overrides)
        data = resolve_paths(apply_overrides(data, overrides), Path.cwd(), only=overridden)
    return data, base


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply CLI overrides, validate; a problem raises one-line `ConfigError`.
    Relative paths in the file resolve against its folder, those of overrides against the working
    directory (see PATHS)."""
    data, base = read_config_file(path, overrides)
    return parse_config({**data, "base_dir": str(base)}, source=str(path))


def parse_config(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None
