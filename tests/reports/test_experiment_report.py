"""The experiment report from cells' values worked by hand: spreads, paired verdicts, markdown, plots."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from synthvision.core.experiment import ExperimentConfig
from synthvision.reports.experiment import (
    ExperimentReport,
    arm_metrics,
    render_experiment_report,
    render_plot,
    render_sweeps,
)

T_975_2 = 4.3026527


def experiment() -> ExperimentConfig:
    return ExperimentConfig(
        name="hand",
        base="base.yaml",
        output="out",
        seeds=[0, 1, 2],
        baseline="a",
        arms={"a": {}, "b": {"training.lr": 0.1}},
        metrics={
            "top1": {"path": "train.evaluation.tuned_top1"},
            "fd": {"path": "quality.run.frechet_to_real", "higher_is_better": False},
        },
        sweeps={"lr": {"field": "training.lr", "values": [0.1, 0.2]}},
    )


def values():
    top1 = {
        "a": [70.0, 75.0, 80.0],
        "b": [72.0, 77.0, 81.0],
        "lr=0.1": [60.0, 61.0, 62.0],
        "lr=0.2": [65.0, None, 67.0],
    }
    fd = {"a": [1.0, 1.0, 1.0], "b": [1.5, 1.4, 1.6], "lr=0.1": [1.0, 1.0, 1.0], "lr=0.2": [1.0, 1.0, 1.0]}
    return {(arm, seed): {"top1": top1[arm][i], "fd": fd[arm][i]} for arm in top1 for i, seed in enumerate((0, 1, 2))}


def test_each_arm_has_its_spread_and_its_paired_difference_from_the_baseline():
    rows = {(row.arm, row.metric): row for row in arm_metrics(experiment(), values())}
    a, b = rows["a", "top1"], rows["b", "top1"]
    assert (a.mean, a.std, a.verdict, a.difference) == (75.0, 5.0, None, None)
    assert a.high - a.mean == pytest.approx(T_975_2 * 5.0 / math.sqrt(3), abs=1e-6)
    # b - a per seed: 2, 2, 1 -> mean 5/3, interval 5/3 -/+ t(2) / 3: above zero
    assert b.difference == pytest.approx(5 / 3) and b.difference_low == pytest.approx(5 / 3 - T_975_2 / 3, abs=1e-6)
    assert b.verdict == "better"
    assert rows["b", "fd"].verdict == "worse"  # a larger distance, where lower is better
    gap = rows["lr=0.2", "top1"]  # seed 1 has no number: left out of both its spread and its pairing
    assert gap.n == 2 and gap.mean == 66.0 and gap.difference == pytest.approx(((65 - 70) + (67 - 80)) / 2)


def test_the_markdown_and_plots_show_every_arm():
    spec = experiment()
    report = ExperimentReport(
        name="hand",
        baseline="a",
        seeds=[0, 1, 2],
        arms=list(spec.arms),
        metrics={name: metric.model_dump() for name, metric in spec.metrics.items()},
        results=arm_metrics(spec, values()),
        shared=[],
        copies={"prompts": 3, "generate": 12, "score": 12, "train": 12},
        sweeps={"lr": {"field": "training.lr", "values": [0.1, 0.2], "arms": ["lr=0.1", "lr=0.2"]}},
        slot_seconds={"a": 100.0, "b": 105.0, "lr=0.1": 136.0, "lr=0.2": 100.0},
        slot_seconds_spent=600.0,
        slot_seconds_apart=1200.0,
    )
    markdown = render_experiment_report(report)
    assert "| b | 76.67 | [" in markdown and "| +1.67 | [+0.23, +3.10] | better |" in markdown
    assert "| a (baseline) | 75.00 |" in markdown and "![each sweep's" in markdown
    # lr=0.1 costs 36 s more per cell and loses 14 points: -14 / 0.01 h
    assert "| lr=0.1 | 136.0 | +36.0 | -1400.00 |" in markdown
    assert "| b | 105.0 | +5.0 | — |" in markdown  # 5% more: timing noise, no gain per hour
    assert (
        report.line() == "hand: top1 against a over 3 seed(s): b better; lr=0.1 worse; lr=0.2 no detectable difference"
    )
    for png in (render_plot(report), render_sweeps(report)):
        with Image.open(io.BytesIO(png)) as image:
            assert image.width > 200 and image.height > 200
