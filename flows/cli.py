"""The `synthvision` command: `run CONFIG` end to end, one command per stage, `status CONFIG`, and
`submit CONFIG` to start a run of a deployment on a work pool.

Every command takes `--set key.path=value` overrides (YAML values), e.g.
`synthvision run configs/demo.yaml --set training.epochs=5 --set output=/tmp/demo`.
A user error (config, input file, missing weights) prints one line and exits with status 2.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import tasks  # noqa: F401  (sets Prefect defaults before prefect is imported)
from synthvision.core.config import RunConfig, load_config
from synthvision.core.errors import ConfigError, SynthvisionError
from synthvision.core.stage_table import STAGES, Stage

if TYPE_CHECKING:
    from synthvision.run import Run

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


def _open(path: Path, overrides: list[str] | None, new_version: bool = False, stages: tuple[str, ...] = ()) -> Run:
    """The run of the config at `path`, with everything that can be checked before work starts
    checked, the models `stages` load included (see `models.sources.preflight`)."""
    config = load_config(path, [*(overrides or []), *(["orchestration.new_version=true"] if new_version else [])])
    from synthvision.run import open_run  # imported after parsing: a config typo need not wait for torch

    run = open_run(config)
    run.storage.check_access()  # no credentials or a denied bucket: one line now, not mid-run
    _check_models(path, overrides, config, stages)
    if config.orchestration.engine == "processes":
        from synthvision.models.devices import expand_devices

        expand_devices(config.orchestration.devices)  # a device this machine lacks is an error now, not mid-run
    return run


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


def _report_url(run: Run, stage_name: str) -> str:
    """Where a person reads a whole-run stage's report: its `report.md`, else its `report.json`."""
    from synthvision.core.stage_table import stage

    storage, row = run.storage, stage(stage_name)
    markdown = f"{row.folder}/report.md"
    return storage.url_of(markdown if storage.exists(markdown) else row.report_file)


def _print_summary(summary: Any) -> None:
    """A stage's summary or report in one line: its `line()`, else `field: value, ...` (fields with
    nothing to say left out)."""
    from dataclasses import asdict

    if hasattr(summary, "line"):
        typer.echo(summary.line())
        return
    typer.echo(", ".join(f"{key}: {value}" for key, value in asdict(summary).items() if value not in (None, [], {})))


@app.command()
def run(config: ConfigPath, set_: Overrides = None, new_version: NewVersion = False) -> None:
    """Run the whole pipeline: prompts, generate, score, train and evaluate."""
    run = _open(config, set_, new_version, stages=RUN_STAGES)
    from flows.synthesize import synthesize

    result = synthesize(run.config)
    for summary in result.stages.values():
        _print_summary(summary)
    if result.report.evaluation.test_set:
        _print_summary(result.report)
    typer.echo(f"report: {_report_url(run, 'train')}")
    if run.config.quality is not None:
        typer.echo(f"data quality: {_report_url(run, 'quality')}")


@app.command()
def experiment(
    file: Annotated[Path, typer.Argument(help="experiment file (YAML): base config, arms, seeds, metrics, baseline")],
    set_: Overrides = None,
) -> None:
    """Run every arm at every seed, sharing each stage between the cells that agree on it, then report
    each metric per arm with its 95% interval and a verdict against the baseline (`--set` changes the
    base config of every arm)."""
    from synthvision.core.experiment import cells, load_experiment

    spec = load_experiment(file)
    made = cells(spec, set_)  # every arm's config checked before any work
    from synthvision.experiment import needed_stages

    _check_models(file, set_, made[0].config, tuple(needed_stages(spec)))
    from flows.experiment import experiment_flow

    report = experiment_flow(spec, set_ or [])
    typer.echo(report.line())
    typer.echo(f"report: {spec.output.rstrip('/')}/report.md")


def _missing_section(config: Path, row: Stage) -> ConfigError:
    """A stage's optional section is absent: one line that says how to add it."""
    section_type = RunConfig.model_fields[row.optional].annotation.__args__[0]
    required = [f"{row.optional}.{name}" for name, field in section_type.model_fields.items() if field.is_required()]
    hint = f"set at least {', '.join(required)}" if required else f"add `{row.optional}: {{}}` for the defaults"
    return ConfigError(f"{config}: no {row.optional} section ({hint})")


def _stage_command(row: Stage) -> None:
    """Register stage `row`'s command: validate, run its flow, print its summary (and its report's
    place); `--new-version` only where the stage's outputs are versioned (`Stage.versioned`)."""

    def command(config: ConfigPath, set_: Overrides = None, new_version: NewVersion = False) -> None:
        run = _open(config, set_, new_version, stages=(row.name,))
        if row.optional is not None and getattr(run.config, row.optional) is None:
            raise _missing_section(config, row)
        from flows.stages import STAGE_FLOWS

        _print_summary(STAGE_FLOWS[row.name](run.config))
        if not row.per_shard and row.folder:
            typer.echo(f"report: {_report_url(run, row.name)}")

    if not row.versioned:
        signature = inspect.signature(command, eval_str=True)
        command.__signature__ = signature.replace(parameters=list(signature.parameters.values())[:2])
    needs = f" (needs {', '.join(row.upstream)})" if row.upstream else ""
    command.__doc__ = f"{row.description[:-1]}{needs}."
    app.command(name=row.name)(command)


for _row in STAGES:
    _stage_command(_row)


@app.command()
def status(config: ConfigPath, set_: Overrides = None) -> None:
    """Every stage's shards and images committed, its rate and ETA, and who writes the output now:
    read from storage alone (no Prefect server needed). Given an experiment file: each cell's stages,
    which copies it shares with an earlier cell, and who runs the experiment now."""
    from synthvision.core.config import read_yaml_mapping

    if "arms" in read_yaml_mapping(config)[0]:
        _experiment_status(config, set_)
        return
    run = _open(config, set_)

    from flows.engines import local_workers
    from flows.progress import BLANK, duration

    rows = {row.stage: row for row in run.status()}
    workers = local_workers(run.config)
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
    if run.config.shards.top_up is not None and run.commits.prompts() is not None:
        _print_quota(run)
    _print_writer(run.holder())


def _print_quota(run: Run) -> None:
    """Top-up rounds: per class, images generated, scored, their pass rate, and the quota's kept and
    shortfall or the adaptive policy's weakness."""
    from synthvision.stages.quotas import standing

    now, top_up = standing(run, partial=True), run.config.shards.top_up
    typer.echo(
        f"top-up ({top_up.policy}): {now.rounds} round(s) after the first (at most {top_up.max_rounds}), "
        f"at most {top_up.max_per_class:,} images per class"
    )
    rows = now.rows(run.label_space.classes, top_up.policy, top_up.signal)
    width = max(len("class"), *(len(str(row["class"])) for row in rows)) + 2
    typer.echo(f"{'class':<{width}}" + "".join(f"{column:>14}" for column in list(rows[0])[1:]))
    for row in rows:
        typer.echo(f"{row['class']:<{width}}" + "".join(f"{str(value):>14}" for value in list(row.values())[1:]))


def _print_writer(holder: dict[str, Any] | None) -> None:
    """Who holds an output's lock: its flow run, host, pid and heartbeat (or that no one does)."""
    import time

    from flows.progress import duration

    if holder is None:
        typer.echo("writer: none (no run holds the output)")
        return
    who = holder.get("run") or {}
    age = time.time() - float(holder.get("heartbeat", 0))
    state = "gone: the next run takes over" if holder["gone"] else f"heartbeat {duration(age)} ago"
    name = f"flow run {who['name']} ({who.get('url') or who.get('flow_run_id')}), " if who.get("name") else ""
    typer.echo(f"writer: {name}{holder.get('host')} pid {holder.get('pid')}, {state}")


def _experiment_status(file: Path, overrides: list[str] | None) -> None:
    """Per cell, each stage it needs as committed / planned units, `^` where the cell reads the copy of
    an earlier cell (the work is done once); then who runs the experiment."""
    from synthvision.core.experiment import cells, load_experiment
    from synthvision.experiment import needed_stages
    from synthvision.run import open_run
    from synthvision.storage.lock import holder
    from synthvision.storage.store import Storage

    spec = load_experiment(file)
    made, stages = cells(spec, overrides), needed_stages(spec)
    width = max(len(cell.name) for cell in made) + 2
    typer.echo(f"{'cell':<{width}}" + "".join(f"{stage:>12}" for stage in stages))
    first: dict[tuple[str, str], str] = {}
    for cell in made:
        run = open_run(cell.config)
        rows = {row.stage: row for row in run.status()}
        texts = []
        for stage in stages:
            earlier = first.setdefault((stage, run.hashes[stage]), cell.name) != cell.name
            texts.append(f"{rows[stage].committed}/{rows[stage].planned}{'^' if earlier else ' '}")
        typer.echo(f"{cell.name:<{width}}" + "".join(f"{text:>12}" for text in texts))
    for stage in stages:
        copies = len({digest for name, digest in first if name == stage})
        typer.echo(f"{stage}: {copies} cop{'y' if copies == 1 else 'ies'} for {len(made)} cells")
    typer.echo("^: the copy an earlier cell computes (done once, read by both)")
    config = made[0].config
    _print_writer(holder(Storage(spec.output, config.storage_options), config.orchestration.lock_ttl_s))


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
