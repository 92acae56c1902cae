"""The quality stage: how diverse, how clean and how close to real a run's synthetic data is, per class
and for the whole run, from the CLIP features the score stage stored (no image is encoded again; the
prompts' text and the real test images are). Writes `quality/quality.png`, `report.md` and, last,
`report.json`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from synthvision.core.stage_table import stage
from synthvision.datasets.labelled import encode_test_set
from synthvision.methods.diversity import (
    frechet_distance,
    mean_pairwise_distance,
    near_duplicate_rate,
    unit_rows,
    vendi_score,
)
from synthvision.reports.page import Page, report_items
from synthvision.reports.quality import QualityReport, QualityRow, render_plot, render_quality_report, table_rows
from synthvision.stages import score

if TYPE_CHECKING:
    from synthvision.run import Run


def committed(run: Run) -> QualityReport | None:
    return run.commits.report("quality", QualityReport)


def page(run: Run, report: QualityReport, done_now: bool) -> Page:
    what = "diversity, near-duplicates, distance to real"
    items = report_items(run.storage, "quality", table_rows(report), what)
    return Page(report, items)


def quality(run: Run) -> QualityReport:
    config, threshold = run.config, run.section("quality").near_duplicate_threshold
    # 1. every scored image's CLIP features and label, and which of them the CLIP filter keeps
    table = score.read_scores(run)
    features, labels = score.embeddings(table), np.asarray(table["label"])
    kept = score.kept(run, table, features)[0]
    # 2. the prompts' CLIP text embeddings (what LE and LLM prompts add is told by these)
    clip, _ = run.clip_and_head()
    prompts = run.prompts
    texts = clip.encode_texts([prompt.text for prompt in prompts]).cpu().numpy()
    prompt_labels = np.array([prompt.class_id for prompt in prompts])
    # 3. real images' features, for the distance to real: the test set, else the few-shot pool
    url, fmt = run.test_set_url(), config.evaluation.format
    if url is None and config.fewshot is not None:
        url, fmt = config.fewshot.train_set, config.fewshot.format
    real = None
    if url is not None:
        real = encode_test_set(clip, url, fmt, run.label_space, config.clip.batch_size, config.storage_options)

    def row(
        name: str, images: np.ndarray, words: np.ndarray, real_rows: np.ndarray | None, duplicates: float | None = None
    ) -> QualityRow:
        kept_features = features[images & kept]
        return QualityRow(
            name=name,
            images=int(images.sum()),
            kept=len(kept_features),
            pass_rate=float(kept[images].mean()) if images.any() else 0.0,
            image_vendi=vendi_score(kept_features),
            image_distance=mean_pairwise_distance(kept_features),
            near_duplicate_rate=near_duplicate_rate(kept_features, threshold) if duplicates is None else duplicates,
            prompts=int(words.sum()),
            prompt_vendi=vendi_score(texts[words]),
            prompt_distance=mean_pairwise_distance(texts[words]),
            frechet_to_real=None
            if real_rows is None or len(kept_features) < 2 or real_rows.sum() < 2
            else frechet_distance(unit_rows(kept_features), unit_rows(real[0][real_rows])),
        )

    # 4. the measures per class, then for the whole run
    classes = [
        row(name, labels == c, prompt_labels == c, None if real is None else real[1] == c)
        for c, name in enumerate(run.label_space.classes)
    ]
    # (near-duplicates are sought within each class: memory bounded by a class, not by the run)
    duplicates = sum(c.near_duplicate_rate * c.kept for c in classes) / max(sum(c.kept for c in classes), 1)
    everything = np.ones(len(labels), bool)
    all_real = None if real is None else np.ones(len(real[1]), bool)
    whole = row("all", everything, np.ones(len(prompts), bool), all_real, duplicates)
    # 5. the report: plot and markdown first, JSON last (it commits the stage)
    report = QualityReport(
        run_name=config.run_name,
        config_hash=run.hashes["quality"],
        config_hashes=run.hashes,
        near_duplicate_threshold=threshold,
        real_set=run.shown(url),
        run=whole,
        classes=classes,
    )
    run.storage.write_bytes(f"{stage('quality').folder}/quality.png", render_plot(report))
    run.commits.commit_report("quality", report, render_quality_report(report))
    return report
