"""The train stage's report: its shape (`TrainReport`, stored as `train/report.json`) and its
rendering for people (`train/report.md`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Strategies:
    prompts: str  # basic or language_enhancement
    clip_filter: bool
    loss: str  # ce or sce


@dataclass(frozen=True)
class TrainData:
    synthetic_images: int  # scored
    passed_filter: int
    trained_on: int
    filter_threshold: float
    near_duplicates_dropped: int = 0  # after CF (filter.near_duplicates)
    below_threshold_used: int = 0  # trained on though below CF's threshold (CF off, or a class short of its quota)


@dataclass(frozen=True)
class Evaluation:
    test_set: str | None  # None: no test set configured, the head was not evaluated
    test_images: int = 0
    zero_shot_top1: float | None = None
    tuned_top1: float | None = None  # the last epoch's head: what this stage reports and keeps
    gain: float | None = None
    # the best epoch's top-1, chosen on the test set as the paper's code does (so it has seen the test
    # set: an optimistic number, shown beside the last epoch's, never instead of it)
    test_selected_top1: float | None = None
    test_selected_epoch: int | None = None
    per_class_top1: dict[str, float | None] | None = None  # the tuned head's, by class name
    worst_class_top1: float | None = None  # the lowest of those


@dataclass(frozen=True)
class TrainReport:
    run_name: str
    config_hash: str  # the train stage's hash: commits the stage
    output: str
    config_hashes: dict[str, str]  # every stage's, for provenance
    label_space: dict[str, Any]  # name, classes
    strategies: Strategies
    data: TrainData
    training: dict[str, Any]  # the training config, steps and per-epoch losses
    evaluation: Evaluation

    def line(self) -> str:
        """What its command prints: top-1 on the test set, or what it trained on."""
        data, evaluation = self.data, self.evaluation
        if not evaluation.test_set:
            return f"trained on {data.trained_on} of {data.synthetic_images} images (no test set to evaluate on)"
        return (
            f"top-1: zero-shot {evaluation.zero_shot_top1:.2f}%, tuned {evaluation.tuned_top1:.2f}% "
            f"({evaluation.gain:+.2f})"
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render_train_report(report: TrainReport) -> str:
    data, evaluation, strategies = report.data, report.evaluation, report.strategies
    lines = [
        f"# synthvision report: {report.run_name}",
        "",
        f"Output: `{report.output}`; config hash (train): `{report.config_hash}`",
        "",
        f"Label space **{report.label_space['name']}** ({report.label_space['classes']} classes); "
        f"prompts **{strategies.prompts}**, CLIP filter **{'on' if strategies.clip_filter else 'off'}**, "
        f"loss **{strategies.loss}**.",
        "",
        f"| synthetic images | passed CF (threshold {data.filter_threshold:.4f}) | trained on |",
        "|---:|---:|---:|",
        f"| {data.synthetic_images} | {data.passed_filter} | {data.trained_on} |",
        "",
    ]
    if data.near_duplicates_dropped:
        lines += [f"Near-duplicates dropped after CF: {data.near_duplicates_dropped}.", ""]
    if data.below_threshold_used:
        lines += [f"Trained on below CF's threshold: {data.below_threshold_used} images.", ""]
    if evaluation.test_set:
        lines += [
            f"Top-1 on `{evaluation.test_set}` ({evaluation.test_images} images):",
            "",
            "| model | top-1 (%) |",
            "|---|---:|",
            f"| CLIP zero-shot | {_pct(evaluation.zero_shot_top1)} |",
            f"| CLIP + synthetic (CT) | {_pct(evaluation.tuned_top1)} |",
            f"| gain | {evaluation.gain:+.2f} |",
            f"| test-selected: best epoch ({evaluation.test_selected_epoch}) on the test set | "
            f"{_pct(evaluation.test_selected_top1)} |",
        ]
        if evaluation.per_class_top1:
            lines += [
                "",
                "Top-1 per class (CT): "
                + ", ".join(f"{name} {_pct(value)}" for name, value in evaluation.per_class_top1.items())
                + ".",
            ]
    else:
        lines.append("No test set configured (evaluation.test_set): the head was trained but not evaluated.")
    losses = report.training["epoch_losses"]
    lines += [
        "",
        f"Training: {report.training['epochs']} epochs, {report.training['steps']} steps, "
        f"loss {losses[0]:.4f} -> {losses[-1]:.4f}.",
        "",
    ]
    return "\n".join(lines)
