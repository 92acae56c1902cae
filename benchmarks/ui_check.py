"""What a person sees in the Prefect UI, checked in a real browser.

Starts `prefect server start` on loopback (its own PREFECT_HOME), runs the demo against it with the
`synthvision` command, then opens the flow run and its artifacts in headless Chromium (Debian's
`chromium`, driven by Playwright) and asserts that
  - the run's own page (the flow run a user opens) logs the top-1 and lists every artifact,
  - the contact sheet image loads (natural width > 0),
  - no cell of any table artifact is empty,
  - each shard stage's progress artifact shows a rate and an ETA,
saving a screenshot of each page. Prints a table of what it checked; exits 1 if any check fails.

    python benchmarks/ui_check.py --out runs/ui-check    # ~3 minutes on 2 cores
    python benchmarks/ui_check.py --experiment FILE      # an experiment's run page, report and table

An experiment's pages: its flow run logs its verdicts (`... against BASELINE ...`), its report's plot
loads, and its table of means, intervals and verdicts has no empty cell.

Needs `apt-get install chromium` and `pip install -e '.[ui]'` (Playwright, without its own browsers).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.loopback import PrefectServer  # noqa: E402

CHROMIUM_ARGS = [  # this machine's closed network: no background connections, no component updates
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def prefect_server(home: Path) -> Iterator[dict[str, str]]:
    """A `prefect server start` on loopback; yields the environment that points clients at it."""
    server = PrefectServer(home).start()
    try:
        yield server.env
    finally:
        server.stop()


def api(env: dict[str, str], path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{env['PREFECT_API_URL']}/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def check_pages(
    env: dict[str, str],
    run_name: str,
    shots: Path,
    logged: str = "top-1: zero-shot",
    artifacts_at_least: int = 8,
    keys: str | None = None,
) -> list[tuple[str, str, bool]]:
    """Open the run's pages in Chromium; returns (page, what was checked, passed) rows. `logged`: what
    the run's last log line says (a run's top-1; an experiment's verdicts say `against`); `keys`: the
    start of the artifact keys to check (default `<run_name>-`; an experiment's own, not its cells')."""
    from playwright.sync_api import sync_playwright

    ui = env["PREFECT_UI_URL"]
    runs = api(env, "flow_runs/filter", {"flow_runs": {"name": {"any_": [run_name]}}, "limit": 1})
    artifacts = api(env, "artifacts/latest/filter", {"artifacts": {"key": {"like_": run_name}}, "limit": 200})
    latest = {a["key"]: a for a in artifacts if a["key"] and a["key"].startswith(keys or f"{run_name}-")}
    results: list[tuple[str, str, bool]] = [
        ("api", f"{len(latest)} artifacts of {run_name}", len(latest) >= artifacts_at_least)
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        def visit(url: str, name: str, ready: str) -> None:
            page.goto(url)
            try:
                page.wait_for_selector(ready, timeout=60_000)
                page.wait_for_timeout(1500)  # let the page settle (fonts, late requests)
            finally:
                page.screenshot(path=shots / f"{name}.png", full_page=True)

        visit(f"{ui}/runs/flow-run/{runs[0]['id']}", "flow-run", "text=Completed")
        results.append(("flow run", "opens, state Completed", True))
        logs = page.inner_text("body")  # the Logs tab, open first
        results.append(("flow run logs", f"end with {logged!r} and the report", logged in logs))
        page.get_by_text("Artifacts", exact=True).first.click()
        page.wait_for_timeout(3000)
        page.screenshot(path=shots / "flow-run-artifacts.png", full_page=True)
        shown = [key for key in latest if key in page.inner_text("body")]
        results.append(
            (
                "flow run artifacts",
                f"{len(shown)} of {len(latest)} artifacts on the run's own page",
                len(shown) == len(latest),
            )
        )
        for key, artifact in sorted(latest.items()):
            name = re.sub(r"^[0-9a-f]{6}-", "", key.removeprefix(f"{run_name}-"))  # less the output id
            visit(f"{ui}/artifacts/artifact/{artifact['latest_id']}", name, f"text={key}")
            if artifact["type"] == "markdown" and "![" in artifact["data"]:
                page.wait_for_load_state("networkidle")
                widths = page.eval_on_selector_all("img[alt]", "images => images.map(i => i.naturalWidth)")
                results.append((name, f"image natural widths {widths}", bool(widths) and min(widths) > 0))
            elif artifact["type"] == "table":
                cells = page.eval_on_selector_all("td", "cells => cells.map(c => c.innerText.trim())")
                empty = sum(cell == "" for cell in cells)
                results.append((name, f"{len(cells)} table cells, {empty} empty", bool(cells) and empty == 0))
            elif artifact["type"] == "progress":
                text = page.inner_text("body")
                shown = "images/s" in text and "ETA" in text
                results.append((name, "shows a rate (images/s) and an ETA", shown))
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ui-check", help="screenshots go here")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--ui", help="only check the pages of --run-name on this running server's UI URL")
    parser.add_argument("--run-name", default="demo")
    parser.add_argument("--experiment", help="an experiment file to run and check instead of the demo")
    args = parser.parse_args()
    shots = args.out.resolve()
    shots.mkdir(parents=True, exist_ok=True)
    if args.ui:
        report(check_pages({"PREFECT_UI_URL": args.ui, "PREFECT_API_URL": f"{args.ui}/api"}, args.run_name, shots))
    with tempfile.TemporaryDirectory() as home, prefect_server(Path(home)) as env:
        output = Path(home) / "output"
        started = time.monotonic()
        if args.experiment:  # its cells' outputs and report go where the file says
            command = ["experiment", args.experiment]
        else:
            command = ["run", args.config, "--set", f"output={output}"]
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", *command], cwd=REPO, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        print(f"{command[0]}: {time.monotonic() - started:.0f} s; screenshots in {shots}")
        if args.experiment:
            name, keys = experiment_pages(args.experiment)
            report(check_pages(env, name, shots, "against", 2, keys))
        run_name = json.loads((output / "run.json").read_text())["config"]["run_name"]
        report(check_pages(env, run_name, shots))


def experiment_pages(file: str | Path) -> tuple[str, str]:
    """An experiment's flow run name and the start of its own artifacts' keys."""
    from flows.fanout import output_key
    from synthvision.core.experiment import load_experiment
    from synthvision.storage.store import Storage

    experiment = load_experiment(file)
    return experiment.name, output_key(experiment.name, Storage(experiment.output), "experiment")


def report(results: list[tuple[str, str, bool]]) -> None:
    """Print the checks as a table; exit 0 if all passed, else 1."""
    width = max(len(page) for page, _, _ in results)
    print(f"{'page':<{width}}  {'check':<60}  result")
    for page, what, passed in results:
        print(f"{page:<{width}}  {what:<60}  {'ok' if passed else 'FAILED'}")
    sys.exit(0 if all(passed for _, _, passed in results) else 1)


if __name__ == "__main__":
    main()
