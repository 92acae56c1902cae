"""The fewshot stage (paper Tables 5-7): M real shots per class with the synthetic data, for each
shot count and strategy (real only, synthetic only, mix, phase-wise), evaluated on the real test set.
Writes `fewshot/accuracy.png`, `report.md` and, last, `report.json`."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from synthvision.core.errors import ConfigError, DataError
from synthvision.core.stage_table import stage
from synthvision.datasets.labelled import EncodedSet, encode_labelled, read_labelled
from synthvision.methods.classifier_tuning import per_class_top1, predict, top1, worst_class, zero_shot_head
from synthvision.methods.fewshot import Encoder, Part, part_losses, real_filter, sample_shots, train_few_shot
from synthvision.models.devices import resolve_device
from synthvision.reports.fewshot import FewShotReport, FewShotRow, render_few_shot_report, render_plot
from synthvision.reports.page import Page, report_items
from synthvision.stages import generate, score

if TYPE_CHECKING:
    from synthvision.run import Run


def committed(run: Run) -> FewShotReport | None:
    return run.commits.report("fewshot", FewShotReport)


def page(run: Run, report: FewShotReport, done_now: bool) -> Page:
    rows = [asdict(row) for row in report.results]
    items = report_items(run.storage, "fewshot", rows, "top-1 per shots and strategy")
    return Page(report, items)


def few_shot(run: Run) -> FewShotReport:
    fewshot, seed = run.section("fewshot"), run.config.seed
    url = run.test_set_url()
    if url is None:
        raise ConfigError("fewshot: needs a test set (evaluation.test_set or evaluation.demo_test_set)")
    # 1. the synthetic data (scores after CF), CLIP, the test set encoded once, and the real pool's
    #    labels; the shots of every M are drawn from them (nested, with the run's seed) and only those
    #    are encoded. The image tower runs at every step when BN statistics or the encoder are
    #    trained, so then the images themselves are kept
    synthetic = score.read_synthetic(run)
    clip, zero_shot = run.clip_and_head()
    image_level = fewshot.batch_norm == "train" or fewshot.tune_encoder
    pool_labels, test = _real_sets(run, url, image_level)
    chosen_of = {shots: sample_shots(pool_labels, shots, run.label_space.classes, seed) for shots in fewshot.shots}
    drawn = np.unique(np.concatenate(list(chosen_of.values())))
    pool = _encode_pool(run, drawn, image_level)
    device = resolve_device(fewshot.device)
    syn_images = generate.read_images(run, synthetic.keys) if image_level else []
    real_loss, syn_loss = part_losses(fewshot)
    results = []
    for shots in fewshot.shots:
        # 2. M shots per class (drawn above); the real filter (RF) drops synthetic images whose
        #    nearest real neighbours are of another class
        chosen = np.searchsorted(drawn, chosen_of[shots])  # rows of `pool`
        keep = np.ones(len(synthetic.labels), bool)
        if fewshot.real_filter.enabled:
            keep = real_filter(
                synthetic.features, synthetic.labels, pool.features[chosen], pool.labels[chosen], fewshot.real_filter.k
            )
        syn_labels, syn_teacher = synthetic.labels[keep], synthetic.teacher[keep]
        for strategy in fewshot.strategies:
            # 3. each strategy from CLIP's zero-shot head: on cached features, or through the image tower
            head = zero_shot_head(zero_shot.class_embeddings, zero_shot.logit_scale)
            if image_level:
                encoder = Encoder(clip.model.visual, clip.preprocess, device, fewshot.batch_norm, fewshot.tune_encoder)
                real = Part.images([pool.images[i] for i in chosen], pool.labels[chosen], encoder, loss=real_loss)
                kept_images = [syn_images[i] for i in np.flatnonzero(keep)]
                syn = Part.images(kept_images, syn_labels, encoder, syn_teacher, syn_loss) if keep.any() else None
                result = train_few_shot(strategy, head, real, syn, fewshot, seed, encoder)
                test_features = encoder.encode(test.images, run.config.clip.batch_size).numpy()
            else:
                real = Part.cached(pool.features[chosen], pool.labels[chosen], loss=real_loss, device=device)
                syn = (
                    Part.cached(synthetic.features[keep], syn_labels, syn_teacher, syn_loss, device)
                    if keep.any()
                    else None
                )
                result = train_few_shot(strategy, head, real, syn, fewshot, seed)
                test_features = test.features
            # 4. its top-1 on the test set, overall and of its worst class
            predictions = predict(result.head, test_features)
            per_class = per_class_top1(predictions, test.labels, run.label_space.num_classes)
            results.append(
                FewShotRow(
                    shots=shots,
                    strategy=strategy,
                    top1=top1(predictions, test.labels),
                    steps=len(result.steps),
                    synthetic_used=0 if strategy == "real_only" else int(keep.sum()),
                    real_filter_dropped=int((~keep).sum()),
                    worst_class_top1=worst_class(per_class),
                )
            )
    # 5. the report: plot and markdown first, JSON last (it commits the stage)
    report = FewShotReport(
        run_name=run.config.run_name,
        config_hash=run.hashes["fewshot"],
        config_hashes=run.hashes,
        test_set=run.shown(url),
        test_images=int(len(test.labels)),
        zero_shot_top1=top1(zero_shot.logits(test.features).argmax(axis=1), test.labels),
        synthetic={
            "scored": synthetic.scored,
            "after_clip_filter": len(synthetic.labels),
            "real_filter": fewshot.real_filter.model_dump(),
        },
        encoder={"batch_norm": fewshot.batch_norm, "tuned": fewshot.tune_encoder},
        results=results,
    )
    run.storage.write_bytes(f"{stage('fewshot').folder}/accuracy.png", render_plot(report))
    run.commits.commit_report("fewshot", report, render_few_shot_report(report))
    return report


def _real_sets(run: Run, url: str, keep_images: bool) -> tuple[np.ndarray, EncodedSet]:
    """The labels of the pool the shots are drawn from, and the test set encoded by CLIP; an error
    when they share an image."""
    fewshot, config = run.config.fewshot, run.config
    clip, _ = run.clip_and_head()
    batch, options = config.clip.batch_size, config.storage_options
    _, labels, digests = read_labelled(fewshot.train_set, fewshot.format, run.label_space, options, "fewshot.train_set")
    test = encode_labelled(
        clip, url, config.evaluation.format, run.label_space, batch, options, keep_images=keep_images
    )
    shared = set(digests) & set(test.digests)
    if shared:
        raise DataError(
            f"fewshot.train_set shares {len(shared)} image(s) with the test set {url}: the shots must be "
            "disjoint from it"
        )
    return labels, test


def _encode_pool(run: Run, drawn: np.ndarray, keep_images: bool) -> EncodedSet:
    """The drawn shots (positions `drawn` of the pool) encoded by CLIP: a pool of 60,000 or a million
    images costs a second read (the first, `_real_sets`, took its labels), not an encoding of each."""
    fewshot, config = run.config.fewshot, run.config
    clip, _ = run.clip_and_head()
    return encode_labelled(
        clip,
        fewshot.train_set,
        fewshot.format,
        run.label_space,
        config.clip.batch_size,
        config.storage_options,
        "fewshot.train_set",
        keep_images,
        positions=drawn,
    )


def encoded_shots(run: Run, shots: int) -> EncodedSet:
    """The `shots` real images per class this stage draws for that M (the same pool and seed),
    encoded by CLIP: what the few-shot signal of top-up rounds measures each class on."""
    fewshot, config = run.config.fewshot, run.config
    assert fewshot is not None  # the config requires a fewshot section for the few-shot signal
    _, labels, _ = read_labelled(
        fewshot.train_set, fewshot.format, run.label_space, config.storage_options, "fewshot.train_set"
    )
    return _encode_pool(run, sample_shots(labels, shots, run.label_space.classes, config.seed), keep_images=False)
