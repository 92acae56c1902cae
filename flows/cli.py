"""The `synthvision` command: `run CONFIG` end to end, one command per stage, `status CONFIG`, and
`submit CONFIG` to start a run of a deployment on a work pool.

Every command takes `--set key.path=value` overrides (YAML values), e.g.
`synthvision run configs/demo.yaml --set training.epochs=5 --set output=/tmp/demo`.
A user error (config, input file, missing weights) prints one line and exits with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import tasks  # noqa: F401  (sets Prefect defaults before prefect is imported)
from synthvision.core.config import RunConfig, load_config
from synthvision.core.errors import ConfigError, SynthvisionError

app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=__doc__.split("\n")[0]
)

RUN_STAGES = ("prompts", "generate", "score", "train", "quality")
ConfigPath = Annotated[Path, typer.Argument(help="run config (YAML)")]
Overrides = Annotated[list[str] | None, typer.Option("--set", "-s", help="override a field: --set training.epochs=5")]
NewVersion = Annotated[
    bool,
    typer.Option(
        "--new-version", help="replace the data an output holds from a different config (orchestration.new_version)"
    ),
]


def _config(
    path: Path, overrides: list[str] | None, new_version: bool = False, stages: tuple[str, ...] = ()
) -> RunConfig:
    """Load and validate everything that can be checked before work starts, the models `stages` load
    included (see `models.sources.preflight`)."""
    config = load_config(path, [*(overrides or []), *(["orchestration.new_version=true"] if new_version else [])])
    from synthvision.run import open_run  # imported after parsing: a config typo need not wait for torch

    open_run(config).storage.check_access()  # no credentials or a denied bucket: one line now, not mid-run
    _check_models(path, overrides, config, stages)
    if config.orchestration.engine == "processes":
        from synthvision.models.devices import expand_devices

        expand_devices(config.orchestration.devices)  # a device this machine lacks is an error now, not mid-run
    return config


def _check_models(path: Path, overrides: list[str] | None, config: RunConfig, stages: tuple[str, ...]) -> None:
    """Stop before any work, one line per model, when a model the command loads is not here."""
    from synthvision.core.errors import ModelLoadError
    from synthvision.models.sources import preflight

    problems = preflight(config, stages)
    if problems:
        sets = "".join(f" --set {override}" for override in overrides or [])
        raise ModelLoadError(
            f"{len(problems)} model(s) this command loads are not on this machine (and the hub cannot be reached):\n"
            + "".join(f"  {line}\n" for line in problems)
            + f"fetch hub models where there is internet, into the cache this machine reads: synthvision prefetch "
            f"{path}{sets}"
        )


def _report_path(config: RunConfig, stage_name: str = "train", file: str = "report.md") -> str:
    from synthvision.core.stage_table import stage
    from synthvision.run import open_run

    return open_run(config).storage.url_of(f"{stage(stage_name).folder}/{file}")


def _print_summary(summary: Any) -> None:
    """One line per stage summary or report: `field: value, ...` (fields with nothing to say left out)."""
    from dataclasses import asdict

    typer.echo(", ".join(f"{key}: {value}" for key, value in asdict(summary).items() if value not in (None, [], {})))


@app.command()
def run(config: ConfigPath, set_: Overrides = None, new_version: NewVersion = False) -> None:
    """Run the whole pipeline: prompts, generate, score, train and evaluate."""
    cfg = _config(config, set_, new_version, stages=RUN_STAGES)
    from flows.synthesize import synthesize

    result = synthesize(cfg)
    for summary in result.stages.values():
        _print_summary(summary)
    evaluation = result.report.evaluation
    if evaluation.test_set:
        typer.echo(
            f"top-1: zero-shot {evaluation.zero_shot_top1:.2f}%, tuned {evaluation.tuned_top1:.2f}% "
            f"({evaluation.gain:+.2f})"
        )
    typer.echo(f"report: {_report_path(cfg)}")
    if cfg.quality is not None:
        typer.echo(f"data quality: {_report_path(cfg, 'quality')}")


@app.command()
def prompts(config: ConfigPath, set_: Overrides = None, new_version: NewVersion = False) -> None:
    """Expand class names into prompts (strategy B or LE) and write prompts.parquet."""
    cfg = _config(config, set_, new_version, stages=("prompts",))
    from flows.stages import prompts_flow

    _print_summary(prompts_flow(cfg))


@app.command()
def generate(config: ConfigPath, set_: Overrides = None, new_version: NewVersion = False) -> None:
    """Generate every missing shard (needs the prompts stage)."""
    cfg = _config(config, set_, new_version, stages=("generate",))
    from flows.stages import generate_flow

    _print_summary(generate_flow(cfg))


@app.command()
def score(config: ConfigPath, set_: Overrides = None, new_version: NewVersion = False) -> None:
    """CLIP-score every generated shard that has no scores yet."""
    cfg = _config(config, set_, new_version, stages=("score",))
    from flows.stages import score_flow

    _print_summary(score_flow(cfg))


@app.command()
def train(config: ConfigPath, set_: Overrides = None) -> None:
    """Tune the classifier on the scored shards and evaluate it."""
    cfg = _config(config, set_, stages=("train",))
    from flows.stages import train_flow

    train_flow(cfg)
    typer.echo(f"report: {_report_path(cfg)}")


@app.command()
def fewshot(config: ConfigPath, set_: Overrides = None) -> None:
    """Few-shot CT (real shots + synthetic data) per shot count and strategy; needs scored shards."""
    cfg = _config(config, set_, stages=("fewshot",))
    if cfg.fewshot is None:
        raise ConfigError(f"{config}: no fewshot section (set at least fewshot.train_set)")
    from flows.stages import fewshot_flow

    fewshot_flow(cfg)
    typer.echo(f"report: {_report_path(cfg, 'fewshot')}")


@app.command()
def quality(config: ConfigPath, set_: Overrides = None) -> None:
    """The data-quality report: per class, CF pass rate, image and prompt diversity, near-duplicates and
    the distance to real test images (needs scored shards and a quality section)."""
    cfg = _config(config, set_, stages=("quality",))
    if cfg.quality is None:
        raise ConfigError(f"{config}: no quality section (add `quality: {{}}` for the defaults)")
    from flows.stages import quality_flow

    quality_flow(cfg)
    typer.echo(f"report: {_report_path(cfg, 'quality')}")


def _resnet_job(config: Path, set_: list[str] | None, stage: str) -> None:
    cfg = _config(config, set_)
    if getattr(cfg, stage) is None:
        raise ConfigError(f"{config}: no {stage} section")
    from dataclasses import asdict

    from flows import stages

    report = asdict(getattr(stages, f"{stage}_flow")(cfg))
    typer.echo(", ".join(f"{key}: {report[key]}" for key in ("steps", "backbone", "results") if key in report))
    typer.echo(f"report: {_report_path(cfg, stage, 'report.json')}")


@app.command()
def pretrain(config: ConfigPath, set_: Overrides = None) -> None:
    """Pre-train a ResNet on the synthetic shards (supervised or MoCo v2); exports the backbone."""
    _resnet_job(config, set_, "pretrain")


@app.command()
def transfer(config: ConfigPath, set_: Overrides = None) -> None:
    """Fine-tune the pre-trained backbone (and a random init) on a real dataset."""
    _resnet_job(config, set_, "transfer")


@app.command()
def scratch(config: ConfigPath, set_: Overrides = None) -> None:
    """Train ResNets from scratch on the synthetic shards and on k real images per class."""
    _resnet_job(config, set_, "scratch")


@app.command()
def status(config: ConfigPath, set_: Overrides = None) -> None:
    """Every stage's shards and images committed, its rate and ETA, and who writes the output now:
    read from storage alone (no Prefect server needed)."""
    cfg = _config(config, set_)
    import time

    from flows.engines import local_workers
    from flows.progress import BLANK, duration
    from synthvision.core.stage_table import STAGES
    from synthvision.run import open_run

    run = open_run(cfg)
    rows = {row.stage: row for row in run.status()}
    workers = local_workers(cfg)
    typer.echo(f"{'stage':<10}{'planned':>9}{'committed':>11}{'missing':>9}  {'images':<21}{'rate':<22}ETA")
    for stage in STAGES:
        row = rows.get(stage.name)
        if row is None:
            typer.echo(f"{stage.name:<10}{'off: the config has no ' + stage.optional + ' section':>29}")
            continue
        images = BLANK if row.images_done is None else f"{row.images_done:,}/{row.images_planned:,}"
        rate = BLANK if row.rate is None else f"{row.rate:,.1f} images/s/worker"
        eta = row.eta_s(workers)
        eta_text = BLANK if eta is None else duration(eta) + (f" at {workers} workers" if eta and workers > 1 else "")
        typer.echo(
            f"{row.stage:<10}{row.planned:>9}{row.committed:>11}{row.missing:>9}  {images:<21}{rate:<22}{eta_text}"
        )
    holder = run.holder()
    if holder is None:
        typer.echo("writer: none (no run holds the output)")
    else:
        who = holder.get("run") or {}
        age = time.time() - float(holder.get("heartbeat", 0))
        state = "gone: the next run takes over" if holder["gone"] else f"heartbeat {duration(age)} ago"
        name = f"flow run {who['name']} ({who.get('url') or who.get('flow_run_id')}), " if who.get("name") else ""
        typer.echo(f"writer: {name}{holder.get('host')} pid {holder.get('pid')}, {state}")


@app.command()
def prefetch(
    config: ConfigPath,
    set_: Overrides = None,
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="copy the models into this folder (and print the --set values naming them)"),
    ] = None,
) -> None:
    """Fetch every hub model the config names (hub ids, open_clip tags) into the local Hugging Face cache,
    or a folder; offline, list what is cached and what is missing (exit 2 if any is)."""
    from huggingface_hub import constants

    from synthvision.core.errors import ModelLoadError
    from synthvision.models import sources

    cfg = load_config(config, set_)
    offline, missing, sets = constants.HF_HUB_OFFLINE, [], []
    for model in sources.hub_models(cfg):
        path, verb = sources.cached_path(model), "cached "
        if path is None and offline:
            missing.append(model.description)
            typer.echo(f"missing {model.description}")
            continue
        if path is None:
            path, verb = sources.fetch(model), "fetched"
        typer.echo(f"{verb} {model.description}: {_size(sources.size_of(path))} in {path}")
        if folder is not None:
            copy = sources.export(model, path, folder.absolute())
            sets.append(f"--set {model.field}={copy}")
            if model.field == "clip.pretrained" and cfg.clip.uses_quick_gelu:
                sets.append("--set clip.quick_gelu=true")  # the tag implied it; a file does not
    glide = sources.glide_folder_problem(cfg)
    if glide:
        typer.echo(f"missing {glide}: no hub serves GLIDE's weights, put them there by hand")
    problems = [f"{len(missing)} hub model(s) missing offline (HF_HUB_OFFLINE=1): run this where there is internet"]
    problems = (problems if missing else []) + (["GLIDE's weights folder is incomplete"] if glide else [])
    if problems:
        raise ModelLoadError("; ".join(problems))
    if folder is not None:
        typer.echo(f"compute nodes: run with {' '.join(sets) or 'the config as it is'} and HF_HUB_OFFLINE=1")
    else:
        typer.echo(
            f"compute nodes: read this cache (HF_HOME={constants.HF_HOME}, or a copy of {constants.HF_HUB_CACHE}) "
            "with HF_HUB_OFFLINE=1; the config's hub ids and tags stay as they are"
        )


def _size(nbytes: int) -> str:
    """Bytes in the largest unit that keeps at least 1: `512.0 B`, `97.6 MB`."""
    units = ("B", "KB", "MB", "GB", "TB")
    power = 0
    while nbytes >= 1024 ** (power + 1) and power < len(units) - 1:
        power += 1
    return f"{nbytes / 1024**power:,.1f} {units[power]}"


@app.command()
def submit(
    config: ConfigPath,
    set_: Overrides = None,
    deployment: Annotated[
        str, typer.Option(help="FLOW/DEPLOYMENT, as deployed from deployments/prefect.yaml")
    ] = "synthesize/local",
    wait: Annotated[bool, typer.Option(help="follow the run's states to its end; exit 1 unless it completes")] = False,
    pickup_timeout: Annotated[
        float,
        typer.Option(help="with --wait: exit 1 (the run stays queued) if no worker starts it in this time"),
    ] = 120.0,
) -> None:
    """Validate a config here, then start a run of a deployment with it (a worker of its pool runs it)."""
    cfg = load_config(config, set_)  # the schema only: input files are checked where the run executes
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    api = PREFECT_API_URL.value()
    flow_name = deployment.split("/", 1)[0]  # named now as its flow will name it, so the queue shows it so
    name = cfg.run_name if flow_name == "synthesize" else f"{cfg.run_name}-{flow_name}"
    try:
        flow_run = run_deployment(
            deployment, parameters={"config": cfg.model_dump(mode="json")}, flow_run_name=name, timeout=0
        )
    except ObjectNotFound:
        raise ConfigError(
            f"deployment {deployment!r} not found on the Prefect server {api or '(embedded)'}: "
            "deploy it with `prefect deploy --prefect-file deployments/prefect.yaml` (see deployments/README.md)"
        ) from None
    ui = PREFECT_UI_URL.value() or (api.removesuffix("/api") if api else None)
    typer.echo(f"flow run {flow_run.name} ({flow_run.id}): {flow_run.state.name if flow_run.state else 'Scheduled'}")
    if ui:
        typer.echo(f"watch it at {ui}/runs/flow-run/{flow_run.id}")
    if not wait:
        return
    with get_client(sync_client=True) as client:
        final = _follow(client, flow_run.id, pickup_timeout, client.read_deployment_by_name(deployment).work_pool_name)
    if final.state is None or not final.state.is_completed():
        state = final.state.name if final.state else "unknown"
        message = " ".join(((final.state and final.state.message) or "no message").split())
        typer.echo(f"error: flow run {final.name} ended {state}: {message}", err=True)
        sys.exit(1)


def _follow(client: Any, flow_run_id: Any, pickup_timeout: float, pool: str | None, poll_s: float = 1.0) -> Any:
    """Print each state the flow run enters until a final one, which it returns. Exits 1 with a hint
    when no worker has started the run within `pickup_timeout` seconds."""
    import time
    from datetime import datetime

    started, shown = time.monotonic(), None
    while True:
        run = client.read_flow_run(flow_run_id)
        state = run.state.name if run.state else "Scheduled"
        if state != shown:
            message = f": {' '.join(run.state.message.split())}" if run.state and run.state.message else ""
            typer.echo(f"{datetime.now():%H:%M:%S} {state}{message}")
            shown = state
        if run.state is not None and run.state.is_final():
            return run
        waiting = run.state is None or run.state.is_scheduled()
        if waiting and time.monotonic() - started > pickup_timeout:
            typer.echo(
                f"error: no worker started flow run {run.name} within {pickup_timeout:.0f} s (--pickup-timeout); it "
                f"stays queued on work pool {pool!r}: start a worker with `prefect worker start --pool {pool}` in a "
                "shell where PREFECT_API_URL names this server (see deployments/README.md)",
                err=True,
            )
            sys.exit(1)
        time.sleep(poll_s)


def main() -> None:
    from flows import signals

    signals.watch()  # before any flow: Prefect's SIGTERM handling hands back to this process's
    try:
        app()
    except SynthvisionError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    finally:
        signals.end_if_stopped()  # told to stop: one line, the logs delivered, the exit status 128 + signal


if __name__ == "__main__":
    main()
