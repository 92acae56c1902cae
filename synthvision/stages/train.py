"""The train stage: classifier tuning (CT) of CLIP's zero-shot head on the scored synthetic images'
cached features, then top-1 on the real test set against zero-shot CLIP. The report, written last,
commits the stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetensors.torch import save as save_safetensors

from synthvision.core import failpoints
from synthvision.core.stage_table import stage
from synthvision.datasets.labelled import encode_test_set
from synthvision.methods.classifier_tuning import (
    per_class_top1,
    predict,
    top1,
    tune_classifier,
    worst_class,
    zero_shot_head,
)
from synthvision.reports.page import Page, report_items
from synthvision.reports.train import Evaluation, Strategies, TrainData, TrainReport, render_train_report
from synthvision.stages import score

if TYPE_CHECKING:
    from synthvision.run import Run

TRAIN_DIR = stage("train").folder


def committed(run: Run) -> TrainReport | None:
    return run.commits.report("train", TrainReport)


def page(run: Run, report: TrainReport, done_now: bool) -> Page:
    evaluation = report.evaluation
    rows = [
        {"model": "CLIP zero-shot", "top1": evaluation.zero_shot_top1},
        {"model": "CLIP + synthetic (CT)", "top1": evaluation.tuned_top1},
    ]
    items = report_items(run.storage, "train", rows, f"top-1 on {evaluation.test_set}")
    return Page(report, items)


def train(run: Run) -> TrainReport:
    config = run.config
    # 1. the synthetic training data: features, labels and CLIP's logits (SCE's soft targets) of the
    #    images that pass CF, from the scores (no image is encoded again)
    synthetic = score.read_synthetic(run)
    # 2. the real test set's features, if there is one (encoded once)
    clip, zero_shot = run.clip_and_head()
    url, test = run.test_set_url(), None
    if url is not None:
        test = encode_test_set(
            clip, url, config.evaluation.format, run.label_space, config.clip.batch_size, config.storage_options
        )
    # 3. CT: the zero-shot head, initialised from CLIP's class embeddings, tuned on them (each epoch's
    #    top-1 on the test set recorded, for the test-selected figure the paper's code reports)
    result = tune_classifier(
        synthetic.features,
        synthetic.labels,
        synthetic.teacher,
        zero_shot_head(zero_shot.class_embeddings, zero_shot.logit_scale),
        config.training,
        config.seed,
        evaluate=None if test is None else lambda head: top1(predict(head, test[0]), test[1]),
    )
    head_state = {"weight": result.head.weight.detach().contiguous(), "bias": result.head.bias.detach().contiguous()}
    run.storage.write_bytes(
        f"{TRAIN_DIR}/head.safetensors", save_safetensors(head_state, metadata={"config_hash": run.hashes["train"]})
    )
    # 4. top-1 of zero-shot CLIP and of the tuned head (last epoch) on the test set
    evaluation = Evaluation(test_set=None)
    if test is not None:
        features, labels = test
        zero_shot_top1 = top1(zero_shot.logits(features).argmax(axis=1), labels)
        predictions = predict(result.head, features)
        tuned_top1 = top1(predictions, labels)
        per_class = dict(
            zip(run.label_space.classes, per_class_top1(predictions, labels, run.label_space.num_classes), strict=True)
        )
        best = max(range(len(result.epoch_top1)), key=result.epoch_top1.__getitem__)
        evaluation = Evaluation(
            run.shown(url),
            int(len(labels)),
            zero_shot_top1,
            tuned_top1,
            tuned_top1 - zero_shot_top1,
            test_selected_top1=result.epoch_top1[best],
            test_selected_epoch=best + 1,
            per_class_top1=per_class,
            worst_class_top1=worst_class(per_class.values()),
        )
    # 5. the report: markdown first, JSON last (it commits the stage)
    report = TrainReport(
        run_name=config.run_name,
        config_hash=run.hashes["train"],
        output=run.shown(run.storage.url),
        config_hashes=run.hashes,
        label_space={"name": run.label_space.name, "classes": run.label_space.num_classes},
        strategies=Strategies(config.prompts.strategy, config.filter.clip_filter, config.training.loss),
        data=TrainData(
            synthetic.scored,
            synthetic.passed,
            len(synthetic.labels),
            score.threshold(run),
            synthetic.near_duplicates,
            synthetic.below_threshold,
        ),
        training={**config.training.model_dump(), "steps": result.steps, "epoch_losses": result.epoch_losses},
        evaluation=evaluation,
    )
    failpoints.reach("train.before_report")
    run.commits.commit_report("train", report, render_train_report(report))
    return report
