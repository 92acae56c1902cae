"""The train stage: classifier tuning (CT) of CLIP's zero-shot head on the scored synthetic images'
cached features, then top-1 on the real test set against zero-shot CLIP. The report, written last,
commits the stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetensors.torch import save as save_safetensors

from synthvision.core import failpoints
from synthvision.core.stage_table import stage
from synthvision.datasets.labelled import encode_test_set
from synthvision.methods.classifier_tuning import predict, top1, tune_classifier, zero_shot_head
from synthvision.reports.train import Evaluation, Strategies, TrainData, TrainReport, render_train_report
from synthvision.stages import score

if TYPE_CHECKING:
    from synthvision.run import Run

TRAIN_DIR = stage("train").folder


def committed(run: Run) -> TrainReport | None:
    return run.commits.report("train", TrainReport)


def train(run: Run) -> TrainReport:
    config = run.config
    # 1. the synthetic training data: features, labels and CLIP's logits (SCE's soft targets) of the
    #    images that pass CF, from the scores (no image is encoded again)
    synthetic = score.read_synthetic(run)
    # 2. CT: the zero-shot head, initialised from CLIP's class embeddings, tuned on them
    clip, zero_shot = run.clip_and_head()
    result = tune_classifier(
        synthetic.features,
        synthetic.labels,
        synthetic.teacher,
        zero_shot_head(zero_shot.class_embeddings, zero_shot.logit_scale),
        config.training,
        config.seed,
    )
    head_state = {"weight": result.head.weight.detach().contiguous(), "bias": result.head.bias.detach().contiguous()}
    run.storage.write_bytes(
        f"{TRAIN_DIR}/head.safetensors", save_safetensors(head_state, metadata={"config_hash": run.hashes["train"]})
    )
    # 3. top-1 of zero-shot CLIP and of the tuned head on the real test set, if there is one
    evaluation = Evaluation(test_set=None)
    url = run.test_set_url()
    if url is not None:
        features, labels = encode_test_set(
            clip, url, config.evaluation.format, run.label_space, config.clip.batch_size, config.storage_options
        )
        zero_shot_top1 = top1(zero_shot.logits(features).argmax(axis=1), labels)
        tuned_top1 = top1(predict(result.head, features), labels)
        evaluation = Evaluation(url, int(len(labels)), zero_shot_top1, tuned_top1, tuned_top1 - zero_shot_top1)
    # 4. the report: markdown first, JSON last (it commits the stage)
    report = TrainReport(
        run_name=config.run_name,
        config_hash=run.hashes["train"],
        output=run.storage.url,
        config_hashes=run.hashes,
        label_space={"name": run.label_space.name, "classes": run.label_space.num_classes},
        strategies=Strategies(config.prompts.strategy, config.filter.clip_filter, config.training.loss),
        data=TrainData(synthetic.scored, synthetic.passed, len(synthetic.labels), score.threshold(run)),
        training={**config.training.model_dump(), "steps": result.steps, "epoch_losses": result.epoch_losses},
        evaluation=evaluation,
    )
    failpoints.reach("train.before_report")
    run.commits.commit_report("train", report, render_train_report(report))
    return report
