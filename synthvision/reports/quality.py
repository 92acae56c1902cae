"""The data-quality report of a run: per class and for the whole run, how much of the synthetic data
CLIP's filter keeps, how diverse the kept images and the prompts are, how many images nearly repeat
another, and how far the kept images lie from real ones (see `methods/diversity.py`). JSON, a markdown
table and a plot per class."""

from __future__ import annotations

import io
from dataclasses import dataclass


@dataclass(frozen=True)
class QualityRow:
    name: str  # a class name, or "all" for the whole run
    images: int  # scored
    kept: int  # kept by the CLIP filter (all of them with it off)
    pass_rate: float  # kept / images
    image_vendi: float  # effective number of distinct kept images
    image_distance: float  # 1 - mean cosine similarity of the kept images
    near_duplicate_rate: float  # of the kept images, those that nearly repeat an earlier one
    prompts: int
    prompt_vendi: float  # effective number of distinct prompts (their CLIP text embeddings)
    prompt_distance: float
    frechet_to_real: float | None  # kept images to real images of the class; None without real images


@dataclass(frozen=True)
class QualityReport:
    run_name: str
    config_hash: str  # the quality stage's hash: commits the stage
    config_hashes: dict[str, str]
    near_duplicate_threshold: float
    real_set: str | None  # the real images compared with: the test set, else the few-shot pool
    run: QualityRow  # the whole run ("all")
    classes: list[QualityRow]

    def line(self) -> str:
        """What its command prints: the whole run's figures."""
        run = self.run
        return (
            f"{run.kept} of {run.images} images kept ({run.pass_rate:.1%}), image Vendi {run.image_vendi:.1f}, "
            f"near-duplicates {run.near_duplicate_rate:.1%}"
        )


COLUMNS = (
    ("images", "images", "{:d}"),
    ("kept", "kept", "{:d}"),
    ("pass_rate", "CF pass", "{:.1%}"),
    ("image_vendi", "image Vendi", "{:.1f}"),
    ("image_distance", "image dist.", "{:.3f}"),
    ("near_duplicate_rate", "near-dup.", "{:.1%}"),
    ("prompts", "prompts", "{:d}"),
    ("prompt_vendi", "prompt Vendi", "{:.1f}"),
    ("prompt_distance", "prompt dist.", "{:.3f}"),
    ("frechet_to_real", "Fréchet to real", "{:.3f}"),
)


def table_cells(row: QualityRow) -> list[str]:
    values = [getattr(row, field) for field, _, _ in COLUMNS]
    return [
        form.format(value) if value is not None else "—" for value, (_, _, form) in zip(values, COLUMNS, strict=True)
    ]


def table_rows(report: QualityReport) -> list[dict[str, str]]:
    """The report as table rows (the run first), each with every column, formatted."""
    return [
        {"class": row.name, **dict(zip([title for _, title, _ in COLUMNS], table_cells(row), strict=True))}
        for row in [report.run, *report.classes]
    ]


def render_quality_report(report: QualityReport) -> str:
    lines = [
        f"# synthvision data-quality report: {report.run_name}",
        "",
        "Per class, on CLIP features of the scored images (kept: what the CLIP filter keeps). Vendi: the",
        "effective number of distinct items (1 = all alike, n = all orthogonal); dist.: 1 - mean cosine",
        f"similarity; near-dup.: kept images within cosine {report.near_duplicate_threshold} of an earlier one;",
        f"Fréchet to real: FID's formula on CLIP features, kept images against `{report.real_set}`."
        if report.real_set
        else "No test set or few-shot pool: no distance to real images.",
        "",
        "![quality per class](quality.png)",
        "",
        "| class | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for row in [report.run, *report.classes]:
        name = f"**{row.name}**" if row is report.run else row.name
        lines.append(f"| {name} | " + " | ".join(table_cells(row)) + " |")
    return "\n".join(lines) + "\n"


def render_plot(report: QualityReport) -> bytes:
    """Four bar charts over the classes: CF pass rate, image Vendi score, near-duplicate rate
    and Fréchet distance to real images (when there are real images)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    from matplotlib import pyplot as plt

    names = [row.name for row in report.classes]
    panels = [
        ("CF pass rate", [row.pass_rate for row in report.classes]),
        ("image Vendi (effective number of distinct kept images)", [row.image_vendi for row in report.classes]),
        ("near-duplicate rate", [row.near_duplicate_rate for row in report.classes]),
    ]
    if report.real_set:
        panels.append(("Fréchet distance to real", [row.frechet_to_real or 0.0 for row in report.classes]))
    figure, axes = plt.subplots(len(panels), 1, figsize=(max(6, 0.45 * len(names) + 2), 2.2 * len(panels)))
    for axis, (title, values) in zip(axes, panels, strict=True):
        axis.bar(range(len(names)), values, color="#4c72b0")
        axis.set_title(title, fontsize=10)
        axis.set_xticks(range(len(names)), names if axis is axes[-1] else [""] * len(names), rotation=60, ha="right")
    figure.suptitle(report.run_name)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
