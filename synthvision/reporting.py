"""The run report: `report.json` for machines, `report.md` for people."""

from __future__ import annotations

import json
from typing import Any

from synthvision.storage import Storage


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render_train_report(report: dict[str, Any]) -> str:
    data, evaluation, strategies = report["data"], report["evaluation"], report["strategies"]
    lines = [
        f"# synthvision report: {report['run_name']}",
        "",
        f"Output: `{report['output']}`; config hash (train): `{report['config_hashes']['train']}`",
        "",
        f"Label space **{report['label_space']['name']}** ({report['label_space']['classes']} classes); "
        f"prompts **{strategies['prompts']}**, CLIP filter **{'on' if strategies['clip_filter'] else 'off'}**, "
        f"loss **{strategies['loss']}**.",
        "",
        "| synthetic images | passed CF (threshold {:.4f}) | trained on |".format(data["filter_threshold"]),
        "|---:|---:|---:|",
        f"| {data['synthetic_images']} | {data['passed_filter']} | {data['trained_on']} |",
        "",
    ]
    if evaluation.get("test_set"):
        lines += [
            f"Top-1 on `{evaluation['test_set']}` ({evaluation['test_images']} images):",
            "",
            "| model | top-1 (%) |",
            "|---|---:|",
            f"| CLIP zero-shot | {_pct(evaluation['zero_shot_top1'])} |",
            f"| CLIP + synthetic (CT) | {_pct(evaluation['tuned_top1'])} |",
            f"| gain | {evaluation['gain']:+.2f} |",
        ]
    else:
        lines.append("No test set configured (evaluation.test_set): the head was trained but not evaluated.")
    losses = report["training"]["epoch_losses"]
    lines += [
        "",
        f"Training: {report['training']['epochs']} epochs, {report['training']['steps']} steps, "
        f"loss {losses[0]:.4f} -> {losses[-1]:.4f}.",
        "",
    ]
    return "\n".join(lines)


def write_report(storage: Storage, reldir: str, report: dict[str, Any]) -> None:
    storage.write_bytes(f"{reldir}/report.json", json.dumps(report, indent=1).encode("utf-8"))
    storage.write_bytes(f"{reldir}/report.md", render_train_report(report).encode("utf-8"))
