"""The few-shot report: top-1 per shot count and strategy as JSON, a markdown table, and a plot of
accuracy against shots (one line per strategy, zero-shot CLIP as a dashed line)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

LABELS = {
    "real_only": "CT w. init (real only)",
    "syn_only": "synthetic only",
    "mix": "mix",
    "syn_then_real": "syn -> real",
    "real_then_syn": "real -> syn",
}


@dataclass(frozen=True)
class FewShotRow:
    shots: int  # real images per class
    strategy: str
    top1: float
    steps: int
    synthetic_used: int
    real_filter_dropped: int
    worst_class_top1: float | None = None  # the lowest top-1 of a class


@dataclass(frozen=True)
class FewShotReport:
    run_name: str
    config_hash: str  # the fewshot stage's hash: commits the stage
    config_hashes: dict[str, str]
    test_set: str
    test_images: int
    zero_shot_top1: float
    synthetic: dict[str, Any]  # scored, after_clip_filter, real_filter (its config)
    encoder: dict[str, Any]  # batch_norm, tuned
    results: list[FewShotRow]

    def line(self) -> str:
        """What its command prints: top-1 per shots and strategy."""
        runs = ", ".join(f"{row.shots}-shot {row.strategy} {row.top1:.2f}%" for row in self.results)
        return f"top-1 on {self.test_set}: zero-shot {self.zero_shot_top1:.2f}%, {runs}"


def accuracy_table(results: list[FewShotRow]) -> tuple[list[int], list[str], dict[tuple[int, str], float]]:
    shots = sorted({row.shots for row in results})
    strategies = list(dict.fromkeys(row.strategy for row in results))
    return shots, strategies, {(row.shots, row.strategy): row.top1 for row in results}


def render_few_shot_report(report: FewShotReport) -> str:
    shots, strategies, top1 = accuracy_table(report.results)
    synthetic = report.synthetic
    lines = [
        f"# synthvision few-shot report: {report.run_name}",
        "",
        f"Top-1 (%) on `{report.test_set}` ({report.test_images} images); CLIP zero-shot: {report.zero_shot_top1:.2f}.",
        f"Synthetic images: {synthetic['scored']} scored, {synthetic['after_clip_filter']} after the CLIP filter; "
        "real filter "
        f"{'on (k = ' + str(synthetic['real_filter']['k']) + ')' if synthetic['real_filter']['enabled'] else 'off'}.",
        "",
        "| shots | " + " | ".join(LABELS[s] for s in strategies) + " |",
        "|---:|" + "---:|" * len(strategies),
    ]
    lines += [f"| {m} | " + " | ".join(f"{top1[m, s]:.2f}" for s in strategies) + " |" for m in shots]
    lines += ["", "![accuracy vs shots](accuracy.png)", ""]
    return "\n".join(lines)


def render_plot(report: FewShotReport) -> bytes:
    """PNG bytes of top-1 against shots (log2 axis)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    from matplotlib import pyplot as plt

    shots, strategies, top1 = accuracy_table(report.results)
    figure, axes = plt.subplots(figsize=(5, 3.5), dpi=120)
    for strategy in strategies:
        axes.plot(shots, [top1[m, strategy] for m in shots], marker="o", label=LABELS[strategy])
    axes.axhline(report.zero_shot_top1, linestyle="--", color="grey", label="CLIP zero-shot")
    axes.set_xscale("log", base=2)
    axes.set_xticks(shots, [str(m) for m in shots])
    axes.set_xlabel("real shots per class")
    axes.set_ylabel("top-1 (%)")
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
