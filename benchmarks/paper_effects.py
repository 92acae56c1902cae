"""The paper's comparisons in the trained toy world, side by side with the paper's own numbers.

    python benchmarks/paper_effects.py [--out runs/paper-effects] [--samples-per-class 50] [--subset]

Runs the shipped configs through the library (the same `Run` methods the Prefect tasks call) and
measures, on Fashion-MNIST's full real test split where its idx files are installed (Debian:
dataset-fashion-mnist; else, or with --subset, on the 2,000 shipped test images):

- Table 1: the toy CLIP's zero-shot top-1 against CT on the demo's synthetic data (B + CF + SCE);
- Table 2: CF on against off, and SCE against CE, on the same synthetic data;
- the generator itself: the share of toy-GLIDE images a classifier trained only on real images
  labels as their prompt's class, at guidance 1 and 3 (the paper samples at 3);
- Table 7 / Figure 1: few-shot CT on M real shots alone against mix and phase-wise training with
  synthetic data, M = 1, 2, 4, 8, 16 (configs/fashion_mnist_fewshot.yaml);
- Table 8: a ResNet pre-trained on synthetic shards against random init, both fine-tuned on a few
  real images per class (configs/fashion_mnist_pretrain.yaml).

Prints one table (effect, the paper's numbers, the toy world's, whether the paper's direction holds)
and writes it, with every number behind it, to OUT/results.json and OUT/results.md. Every stage is
resumable: a rerun reuses what the output already holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthvision.core.config import RunConfig, load_config  # noqa: E402
from synthvision.datasets.fashion_mnist import available, split_file  # noqa: E402
from synthvision.run import Run  # noqa: E402
from synthvision.stages import fewshot, generate, pretrain, train, transfer  # noqa: E402
from synthvision.stages.units import ensure  # noqa: E402
from synthvision.toy.assets import TEST_SUBSET, TRAIN_POOL, shipped  # noqa: E402

TOY = REPO / "synthvision" / "data" / "toy"


def real_sets(subset: bool) -> tuple[str, str, str]:
    """(test set, few-shot pool, what they are): the full splits where installed, else the shipped ones."""
    if not subset and available():
        return (
            str(split_file("test")),
            str(split_file("train")),
            "full Fashion-MNIST test split (10,000 images); shots from the train split",
        )
    return (
        str(shipped(TEST_SUBSET)),
        str(shipped(TRAIN_POOL)),
        "shipped test subset (2,000 images); shots from the shipped train pool",
    )


def config(name: str, output: Path, *overrides: str) -> RunConfig:
    return load_config(REPO / "configs" / name, [f"output={output}", *overrides])


def data_stages(run: Run) -> None:
    """Prompts, every shard, every score: what `synthvision run` does before training."""
    with run.writing():
        ensure(run, "prompts")
        for index in range(run.plan.num_shards):
            ensure(run, "generate", index)
        for index in range(run.plan.num_shards):
            ensure(run, "score", index)


def tuned(base: RunConfig, **fields: object) -> dict:
    """CT on the run's scores with training fields changed (the data stages are reused)."""
    data = base.model_dump(mode="json")
    for path, value in fields.items():
        section, key = path.split("__")
        data[section][key] = value
    run = Run(RunConfig.model_validate(data))
    with run.writing():
        return asdict((train.committed(run) or train.train(run)).evaluation)


def zero_shot_and_ct(out: Path, test_set: str) -> dict:
    base = config("demo.yaml", out / "demo", f"evaluation.test_set={test_set}")
    data_stages(Run(base))
    return {
        "sce_cf": tuned(base),
        "ce_cf": tuned(base, training__loss="ce"),
        "sce_no_cf": tuned(base, filter__clip_filter=False),
        "ce_no_cf": tuned(base, training__loss="ce", filter__clip_filter=False),
    }


def fidelity(samples_per_class: int, demo_output: Path) -> dict:
    """Judge top-1 on fresh samples at guidance 1 and 3, and on the demo's own shards."""
    from synthvision.storage.tars import decode_image, read_samples, sample_image_bytes
    from synthvision.toy.judge import load_judge
    from synthvision.toy.measures import class_prompts, glide_samples
    from synthvision.toy.measures import fidelity as judged

    judge = load_judge(TOY / "judge")
    prompts, labels, seeds = class_prompts(samples_per_class)
    result = {
        f"guidance_{g:g}": judged(judge, glide_samples(str(TOY / "glide"), prompts, seeds, g), labels)
        for g in (1.0, 3.0)
    }
    run = Run(config("demo.yaml", demo_output))
    images, classes = [], []
    for manifest in generate.committed_shards(run):
        with run.storage.open(manifest.data_file) as stream:
            for sample in read_samples(stream, manifest.data_file):
                images.append(decode_image(sample_image_bytes(sample)))
                classes.append(int(sample["cls"]))
    result["demo_shards"] = judged(judge, images, classes) if images else float("nan")
    result["samples_per_guidance"] = len(prompts)
    return result


def few_shot(out: Path, test_set: str, pool: str) -> dict:
    # the few-shot config shares the demo's data stages, so it runs in the demo's output
    run = Run(
        config(
            "fashion_mnist_fewshot.yaml", out / "demo", f"evaluation.test_set={test_set}", f"fewshot.train_set={pool}"
        )
    )
    data_stages(run)
    with run.writing():
        report = asdict(fewshot.committed(run) or fewshot.few_shot(run))
    table: dict[int, dict[str, float]] = {}
    for row in report["results"]:
        table.setdefault(row["shots"], {})[row["strategy"]] = row["top1"]
    return {"zero_shot": report["zero_shot_top1"], "by_shots": table}


def pretraining(out: Path, test_set: str) -> dict:
    run = Run(
        config(
            "fashion_mnist_pretrain.yaml",
            out / "pretrain",
            f"evaluation.test_set={test_set}",
            f"transfer.test_set={test_set}",
        )
    )
    data_stages(run)
    with run.writing():
        pretrained = asdict(pretrain.committed(run) or pretrain.pretrain(run))
        report = asdict(transfer.committed(run) or transfer.transfer(run))
    return {row["init"]: row["top1"] for row in report["results"]} | {
        "train_images": report["train_images"],
        "synthetic_images": pretrained["synthetic_images"],
    }


def table(results: dict) -> list[tuple[str, str, str, str]]:
    """(effect, paper, toy world, paper's direction holds?) rows."""
    ct, fid, fs, pre = results["zero_shot_ct"], results["fidelity"], results["few_shot"], results["pretraining"]
    sce = ct["sce_cf"]
    rows = [
        (
            "Table 1: zero-shot -> CT on synthetic (B+CF+SCE)",
            "CIFAR-10 70.31 -> 80.06; EuroSAT 37.51 -> 55.37; 17-set mean 55.13 -> 59.47",
            f"{sce['zero_shot_top1']:.2f} -> {sce['tuned_top1']:.2f} ({sce['gain']:+.2f})",
            _holds(sce["tuned_top1"] > sce["zero_shot_top1"]),
        ),
        (
            "Table 2: CF off -> on (SCE)",
            "CIFAR-10 77.55 -> 80.06; EuroSAT 54.94 -> 55.37 (LE -> LE+CF)",
            f"{ct['sce_no_cf']['tuned_top1']:.2f} -> {sce['tuned_top1']:.2f}",
            _holds(sce["tuned_top1"] > ct["sce_no_cf"]["tuned_top1"]),
        ),
        (
            "Table 2: CE -> SCE (CF on)",
            "CIFAR-10 77.39 -> 78.23; EuroSAT 45.64 -> 48.23 (B)",
            f"{ct['ce_cf']['tuned_top1']:.2f} -> {sce['tuned_top1']:.2f}",
            _holds(sce["tuned_top1"] >= ct["ce_cf"]["tuned_top1"]),
        ),
        (
            "Generator: judged as its prompt's class, guidance 1 -> 3",
            "samples at guidance 3 (GLIDE: guidance buys fidelity)",
            f"{fid['guidance_1']:.2f} -> {fid['guidance_3']:.2f} ({fid['samples_per_guidance']} samples each)",
            _holds(fid["guidance_3"] > fid["guidance_1"]),
        ),
    ]
    shots = sorted(fs["by_shots"])
    real_only = [fs["by_shots"][m]["real_only"] for m in shots]
    mix = [fs["by_shots"][m]["mix"] for m in shots]
    phase = [max(fs["by_shots"][m]["syn_then_real"], fs["by_shots"][m]["real_then_syn"]) for m in shots]
    rows += [
        (
            f"Figure 1: {'/'.join(map(str, shots))} real shots per class, real only -> mix with synthetic",
            "EuroSAT and 7 more: synthetic data lifts every shot count, less as shots grow",
            f"{_series(real_only)} -> {_series(mix)}",
            _per_shot(shots, [m > r for m, r in zip(mix, real_only, strict=True)]),
        ),
        (
            "Table 7: best phase-wise (syn -> real, real -> syn) -> mix, same shots",
            "EuroSAT RG: 63.32 -> 64.36, 72.85 -> 73.62, 79.21 -> 79.88, 83.99 -> 84.57, 87.44 -> 88.47",
            f"{_series(phase)} -> {_series(mix)}",
            _per_shot(shots, [m >= p for m, p in zip(mix, phase, strict=True)]),
        ),
    ]
    rows.append(
        (
            f"Table 8: fine-tuned on {pre['train_images']} real images, random init -> synthetic pre-training",
            "CIFAR-100 78.83 -> 83.90 (1.2M synthetic)",
            f"{pre['random']:.2f} -> {pre['pretrained']:.2f} ({pre['synthetic_images']} synthetic)",
            _holds(pre["pretrained"] > pre["random"]),
        )
    )
    return rows


def _holds(flag: bool) -> str:
    return "yes" if flag else "no"


def _series(values: list[float]) -> str:
    return "/".join(f"{value:.1f}" for value in values)


def _per_shot(shots: list[int], holds: list[bool]) -> str:
    if all(holds) or not any(holds):
        return _holds(all(holds))
    return (
        "at "
        + ", ".join(str(m) for m, h in zip(shots, holds, strict=True) if h)
        + " shots; not at "
        + ", ".join(str(m) for m, h in zip(shots, holds, strict=True) if not h)
    )


def markdown(rows: list[tuple[str, str, str, str]], test_set: str) -> str:
    lines = [
        f"Top-1 (%) on the {test_set}.",
        "",
        "| effect | paper | toy world | paper's direction holds |",
        "|---|---|---|---|",
    ]
    return "\n".join(lines + [f"| {' | '.join(row)} |" for row in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "paper-effects")
    parser.add_argument(
        "--samples-per-class", type=int, default=50, help="toy-GLIDE samples per class and guidance for the judge"
    )
    parser.add_argument(
        "--subset",
        action="store_true",
        help="evaluate on the shipped 2,000 test images even where the full split is installed",
    )
    args = parser.parse_args()
    test_set, pool, described = real_sets(args.subset)
    started = time.perf_counter()
    results = {"test_set": test_set, "pool": pool}
    results["zero_shot_ct"] = zero_shot_and_ct(args.out, test_set)
    results["fidelity"] = fidelity(args.samples_per_class, args.out / "demo")
    results["few_shot"] = few_shot(args.out, test_set, pool)
    results["pretraining"] = pretraining(args.out, test_set)
    results["seconds"] = round(time.perf_counter() - started, 1)
    rows = table(results)
    text = markdown(rows, described)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({**results, "table": rows}, indent=1, default=str))
    (args.out / "results.md").write_text(text)
    print(text)
    print(f"({results['seconds']:.0f} s; numbers in {args.out / 'results.json'})")


if __name__ == "__main__":
    main()
