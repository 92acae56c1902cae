"""The experiment report: per metric and arm, the spread over seeds and the paired difference from
the baseline with its verdict (`core/stats.py`); which cells shared which stage's outputs; as JSON
(`report.json`, written last), markdown and a bar plot with 95% error bars.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from synthvision.core.experiment import ExperimentConfig
from synthvision.core.stats import Spread, compare, spread

EM_DASH = "—"


@dataclass(frozen=True)
class ArmMetric:
    """One arm's values of one metric over the experiment's seeds (None: its report has no such number)."""

    arm: str
    metric: str
    values: list[float | None]
    n: int
    mean: float | None
    std: float | None
    low: float | None  # the mean's 95% interval
    high: float | None
    difference: float | None = None  # against the baseline, paired by seed (None for the baseline)
    difference_low: float | None = None
    difference_high: float | None = None
    verdict: str | None = None


@dataclass(frozen=True)
class SharedStage:
    """A stage computed once for several cells: the cells (`<arm>-seed<seed>`) that read one copy."""

    stage: str
    stage_hash: str
    cells: list[str]


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    baseline: str
    seeds: list[int]
    arms: list[str]
    metrics: dict[str, dict]  # name -> path, higher_is_better
    results: list[ArmMetric]
    shared: list[SharedStage]
    copies: dict[str, int]  # stage -> copies computed for all cells (cells that ran it / copies: the saving)
    sweeps: dict[str, dict]  # name -> field, values, arms (one per value)
    slot_seconds: dict[str, float]  # arm -> the model-slot seconds one of its cells needs (every stage)
    slot_seconds_spent: float  # what the experiment's copies took, each once
    slot_seconds_apart: float  # what its cells would have taken, sharing nothing

    def line(self) -> str:
        """What the command prints: each arm's verdict on the first metric."""
        first = next(iter(self.metrics))
        verdicts = [
            f"{row.arm} {row.verdict}" for row in self.results if row.metric == first and row.arm != self.baseline
        ]
        return f"{self.name}: {first} against {self.baseline} over {len(self.seeds)} seed(s): " + "; ".join(verdicts)


def arm_metrics(
    experiment: ExperimentConfig, values: dict[tuple[str, int], dict[str, float | None]]
) -> list[ArmMetric]:
    """Each arm's spread per metric and, beside the baseline, its paired difference and verdict;
    `values[arm, seed][metric]` is a cell's number. Seeds where either side lacks the number are
    left out of the pairing."""
    rows = []
    for metric, spec in experiment.metrics.items():
        baseline = [values[experiment.baseline, seed][metric] for seed in experiment.seeds]
        for arm in experiment.arms:
            mine = [values[arm, seed][metric] for seed in experiment.seeds]
            present = [value for value in mine if value is not None]
            whole = spread(present) if present else Spread(0, None, None, None, None)
            pairs = [(a, b) for a, b in zip(mine, baseline, strict=True) if a is not None and b is not None]
            against: dict[str, Any] = {}
            if arm != experiment.baseline and pairs:
                comparison = compare([a for a, _ in pairs], [b for _, b in pairs], spec.higher_is_better)
                difference = comparison.difference
                against = {
                    "difference": difference.mean,
                    "difference_low": difference.low,
                    "difference_high": difference.high,
                    "verdict": comparison.verdict,
                }
            rows.append(ArmMetric(arm, metric, mine, whole.n, whole.mean, whole.std, whole.low, whole.high, **against))
    return rows


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return EM_DASH
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    return EM_DASH if low is None else f"[{_number(low, signed)}, {_number(high, signed)}]"


def render_experiment_report(report: ExperimentReport) -> str:
    seeds = ", ".join(str(seed) for seed in report.seeds)
    lines = [
        f"# synthvision experiment: {report.name}",
        "",
        f"Baseline: `{report.baseline}`. Seeds: {seeds} ({len(report.seeds)}). Intervals: 95%, Student t over "
        "seeds; differences from the baseline paired by seed. A verdict is *better* or *worse* when the "
        "difference's interval excludes zero, else *no detectable difference* at this many seeds.",
        "",
    ]
    for metric, spec in report.metrics.items():
        direction = "higher is better" if spec["higher_is_better"] else "lower is better"
        lines += [
            f"## {metric} (`{spec['path']}`, {direction})",
            "",
            f"| arm | mean | 95% interval | std | seeds | vs {report.baseline} (paired) | 95% interval | verdict |",
            "|---|---:|---|---:|---:|---:|---|---|",
        ]
        for row in (row for row in report.results if row.metric == metric):
            name = f"{row.arm} (baseline)" if row.arm == report.baseline else row.arm
            lines.append(
                f"| {name} | {_number(row.mean)} | {_interval(row.low, row.high)} | {_number(row.std)} | {row.n} "
                f"| {_number(row.difference, True)} | {_interval(row.difference_low, row.difference_high, True)} "
                f"| {row.verdict or EM_DASH} |"
            )
        lines.append("")
    lines += ["![each arm's mean with its 95% interval](experiment.png)", ""]
    if report.sweeps:
        lines += ["![each sweep's mean over its values with its 95% band](sweeps.png)", ""]
    lines += ["## Shared work", ""]
    cells = len(report.arms) * len(report.seeds)
    lines += [
        f"Each of the {cells} cells (arm × seed) needs every stage below; cells that agree on a stage's hash read "
        "one copy of its outputs, computed once.",
        "",
        "| stage | copies computed | cells per copy |",
        "|---|---:|---|",
    ]
    for stage, copies in report.copies.items():
        groups = [shared for shared in report.shared if shared.stage == stage]
        shown = "; ".join(", ".join(group.cells) for group in groups) or "1 each"
        lines.append(f"| {stage} | {copies} of {cells} | {shown} |")
    return "\n".join([*lines, "", *_cost_lines(report), ""])


CLEARLY_MORE = 0.1  # an arm's extra cost, as a share of the baseline's, below which it reads as timing noise


def _cost_lines(report: ExperimentReport) -> list[str]:
    """Cost beside value: each arm's model-slot seconds per cell and, where it costs clearly more than
    the baseline (`CLEARLY_MORE`), the first metric's paired difference per extra slot-hour (a few
    seconds of timing noise would make that figure huge and meaningless)."""
    first = next(iter(report.metrics))
    baseline = report.slot_seconds[report.baseline]
    lines = [
        "## Cost",
        "",
        "Seconds the stages held a model slot (a GPU on a GPU node): the shards' from their manifests' timings, "
        "the training stages' from their reports (0 for a report written before synthvision timed them). "
        "One cell of each arm, its shared stages counted in full (what "
        f"the arm costs alone). This experiment spent {report.slot_seconds_spent:,.0f} slot-seconds; its "
        f"cells apart would have spent {report.slot_seconds_apart:,.0f}. The gain per extra slot-hour is "
        f"given where an arm costs at least {CLEARLY_MORE:.0%} more than the baseline.",
        "",
        f"| arm | slot-seconds per cell | vs {report.baseline} | {first} per extra slot-hour |",
        "|---|---:|---:|---:|",
    ]
    for arm in report.arms:
        extra = report.slot_seconds[arm] - baseline
        difference = next(r.difference for r in report.results if r.metric == first and r.arm == arm)
        clearly = extra > CLEARLY_MORE * baseline
        per_hour = difference / (extra / 3600) if difference is not None and extra > 0 and clearly else None
        lines.append(f"| {arm} | {report.slot_seconds[arm]:,.1f} | {extra:+,.1f} | {_number(per_hour, True)} |")
    return lines


def _widen_if_flat(axes) -> None:
    """A panel whose values are all one number (a class every arm scores 0 on) spans +-1 around it,
    not the float noise of its zero-width intervals (an axis of 1e-17)."""
    low, high = axes.get_ylim()
    if high - low < 1e-6:
        middle = (low + high) / 2
        axes.set_ylim(middle - 1, middle + 1)


def render_plot(report: ExperimentReport) -> bytes:
    """PNG bytes: one panel per metric, each arm's mean with its 95% interval as an error bar and a dot
    per seed beside it, the axis fitted to the values (not from zero: the differences an experiment
    looks for are often a fraction of a point); the baseline's mean as a dashed line. Below, each arm's
    paired difference from the baseline with its interval, against zero: what the verdicts read."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = list(report.metrics)
    figure, panels = plt.subplots(
        2, len(metrics), figsize=(1.4 + 0.9 * len(report.arms) * len(metrics), 6.2), dpi=120, squeeze=False
    )
    for axes, metric in zip(panels[1], metrics, strict=True):  # the paired differences the verdicts read
        rows = [row for row in report.results if row.metric == metric and row.arm != report.baseline]
        for position, row in enumerate(rows):
            if row.difference is not None:
                low, high = row.difference_low, row.difference_high
                error = None if low is None else [[row.difference - low], [high - row.difference]]
                axes.errorbar([position], [row.difference], yerr=error, fmt="o", capsize=5, color="#3b75af")
        axes.axhline(0.0, linestyle="--", linewidth=0.8, color="#555555")
        axes.set_xticks(range(len(rows)), [row.arm for row in rows], rotation=30, ha="right", fontsize=8)
        axes.set_xlim(-0.5, max(len(rows), 1) - 0.5)
        axes.set_title(f"{metric} − {report.baseline} (paired)", fontsize=9)
        _widen_if_flat(axes)
    panels[1][0].set_ylabel("difference, 95% interval")
    for axes, metric in zip(panels[0], metrics, strict=True):
        rows = [row for row in report.results if row.metric == metric]
        for position, row in enumerate(rows):
            colour = "#555555" if row.arm == report.baseline else "#3b75af"
            if row.mean is not None:
                error = None if row.high is None else [[row.mean - row.low], [row.high - row.mean]]
                axes.errorbar([position], [row.mean], yerr=error, fmt="o", capsize=5, color=colour, markersize=6)
            seeds = [value for value in row.values if value is not None]
            axes.plot([position + 0.18] * len(seeds), seeds, ".", color="black", markersize=4, alpha=0.6)
            if row.arm == report.baseline and row.mean is not None:
                axes.axhline(row.mean, linestyle="--", linewidth=0.8, color=colour)
        axes.set_xticks(range(len(rows)), [row.arm for row in rows], rotation=30, ha="right", fontsize=8)
        axes.set_xlim(-0.5, len(rows) - 0.5)
        axes.set_title(metric, fontsize=9)
        _widen_if_flat(axes)
    panels[0][0].set_ylabel("mean over seeds, 95% interval")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def render_sweeps(report: ExperimentReport) -> bytes:
    """PNG bytes: a panel per sweep and metric, the mean over seeds against the swept value with its
    95% band and a dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = list(report.metrics)
    figure, panels = plt.subplots(
        len(report.sweeps), len(metrics), figsize=(3.6 * len(metrics), 3.0 * len(report.sweeps)), dpi=120, squeeze=False
    )
    by_arm = {(row.arm, row.metric): row for row in report.results}
    for line, (name, sweep) in zip(panels, report.sweeps.items(), strict=True):
        for axes, metric in zip(line, metrics, strict=True):
            rows = [by_arm[arm, metric] for arm in sweep["arms"]]
            xs = sweep["values"]
            axes.plot(xs, [row.mean for row in rows], marker="o", color="#3b75af")
            with_interval = [(x, row) for x, row in zip(xs, rows, strict=True) if row.low is not None]
            axes.fill_between(
                [x for x, _ in with_interval],
                [row.low for _, row in with_interval],
                [row.high for _, row in with_interval],
                alpha=0.25,
                color="#3b75af",
            )
            for x, row in zip(xs, rows, strict=True):
                seeds = [value for value in row.values if value is not None]
                axes.plot([x] * len(seeds), seeds, "o", color="black", markersize=2.5)
            axes.set_xlabel(f"{name} ({sweep['field']})", fontsize=8)
            axes.set_title(metric, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
