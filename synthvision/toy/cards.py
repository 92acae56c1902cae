"""Model cards: one `MODEL_CARD.md` per toy model (what it is, its data split, its training recipe,
steps, wall time, the figures it was measured at) beside a loss-curve PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_plot(path: Path, curves: dict[str, tuple[list[int], list[float]]], xlabel: str = "step") -> None:
    figure, axis = plt.subplots(figsize=(5, 3), dpi=100)
    for name, (x, y) in curves.items():
        axis.plot(x, y, label=name)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("training loss")
    values = [v for _, ys in curves.values() for v in ys if v > 0]
    if values and max(values) > 10 * min(values):  # a log scale only where the curve spans decades
        axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_card(
    folder: Path, title: str, summary: str, facts: dict[str, str], figures: dict[str, str], curve_file: str
) -> None:
    """`MODEL_CARD.md`: the summary, a table of facts (data, recipe, steps, time), a table of the
    measured figures, and the loss curve."""
    lines = [f"# {title}", "", summary, "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts.items()]
    lines += ["", "## Measured", "", "| figure | value |", "|---|---:|"]
    lines += [f"| {key} | {value} |" for key, value in figures.items()]
    lines += ["", f"![training loss]({curve_file})", ""]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
