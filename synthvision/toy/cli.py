"""`python -m synthvision.toy COMMAND`: rebuild the toy world's files from Fashion-MNIST's idx files.

Every command is seeded and writes a model card (`MODEL_CARD.md` + loss curve) beside its weights.
`all` runs them in order: data, judge, clip, glide base, glide upsample (about 2 hours on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from synthvision.datasets.fashion_mnist import DEBIAN_FOLDER, load_split

TOY_DIR = Path(__file__).resolve().parents[1] / "data" / "toy"
WORK_DIR = Path("runs/toy-training")
GLIDE_SCHEDULES = {"base": (9000, 128), "upsample": (3000, 64)}  # (steps, batch size) of the shipped models
TRAIN_SPLIT = "Fashion-MNIST train split (60,000 images)"
SPLITS = f"{TRAIN_SPLIT}; figures on the test split (10,000), never trained on"


def _machine() -> str:
    """Where a model trained (its wall time depends on it; the shipped ones shared 2 cores with each other)."""
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch CPU thread(s) of "
        f"{os.cpu_count()} cores, torch {torch.__version__}"
    )


def _data(args: argparse.Namespace) -> None:
    from synthvision.toy.assets import write_assets

    sizes = write_assets(
        args.out / "fashion-mnist",
        load_split("train", args.fashion_mnist),
        load_split("test", args.fashion_mnist),
        args.seed,
    )
    print("wrote", ", ".join(f"{name} ({size / 1e6:.1f} MB)" for name, size in sizes.items()))


def _judge(args: argparse.Namespace) -> None:
    from synthvision.toy.cards import loss_plot, write_card
    from synthvision.toy.judge import JudgeTraining, save_judge, timed_training

    folder = args.out / "judge"
    model, record = timed_training(
        load_split("train", args.fashion_mnist),
        load_split("test", args.fashion_mnist),
        JudgeTraining(seed=args.seed, epochs=args.judge_epochs),
    )
    save_judge(model, folder, record)
    loss_plot(
        folder / "loss.png",
        {"cross-entropy": (list(range(1, len(record["epoch_losses"]) + 1)), record["epoch_losses"])},
        xlabel="epoch",
    )
    write_card(
        folder,
        "Judge: a Fashion-MNIST classifier trained on real images only",
        "A small CNN (two conv blocks with BatchNorm, 28 px grey input) that says which class an image shows. "
        "It never sees a synthetic image: it measures whether the toy GLIDE's images look like real images of "
        "their prompt's class.",
        {
            "data": SPLITS,
            "recipe": f"AdamW, one-cycle lr {record['settings']['lr']}, batch {record['settings']['batch_size']}, "
            f"{record['settings']['epochs']} epochs, ±2 px shifts, half of each batch round-tripped through 16 px",
            "seed": str(args.seed),
            "wall time": f"{record['train_seconds']} s ({_machine()})",
            "retrain": "`python -m synthvision.toy judge`",
        },
        {"top-1 on the real test split": f"{record['test_top1']:.2f}%"},
        "loss.png",
    )
    print(f"judge: test top-1 {record['test_top1']:.2f}% in {record['train_seconds']} s")


def _clip(args: argparse.Namespace) -> None:
    from synthvision.models.clip import save_clip
    from synthvision.toy.clip_training import TOY_CLIP_CONFIG, TOY_PREPROCESS, ClipTraining, train_clip

    folder = args.out / "clip"
    settings = ClipTraining(epochs=args.clip_epochs, seed=args.seed)
    started = time.time()
    model, log = train_clip(
        load_split("train", args.fashion_mnist),
        settings,
        on_log=lambda step, loss: print(
            f"clip step {step} loss {loss:.4f} ({time.time() - started:.0f} s)", flush=True
        ),
    )
    save_clip(model, TOY_CLIP_CONFIG, folder, TOY_PREPROCESS, torch.float16)
    (folder / "training.json").write_text(
        json.dumps({"settings": vars(settings), "log": vars(log), "machine": _machine()})
    )
    _clip_card(args)


def _clip_card(args: argparse.Namespace) -> None:
    from synthvision.toy.captions import CLIP_NAMING, CLIP_TEMPLATES
    from synthvision.toy.cards import loss_plot, write_card
    from synthvision.toy.clip_training import TOY_CLIP_CONFIG, linear_probe
    from synthvision.toy.measures import encode_split, load_toy_clip, zero_shot_top1

    folder = args.out / "clip"
    record = json.loads((folder / "training.json").read_text())
    settings, log = record["settings"], record["log"]
    train, test = load_split("train", args.fashion_mnist), load_split("test", args.fashion_mnist)
    clip = load_toy_clip(str(folder))  # measured as a run loads it
    train_features, test_features = encode_split(clip, train), encode_split(clip, test)
    zero_shot = zero_shot_top1(clip, test_features, test.labels, list(CLIP_TEMPLATES))
    normed = [torch.nn.functional.normalize(torch.from_numpy(f), dim=-1) for f in (train_features, test_features)]
    probe = linear_probe(normed[0], train.labels, normed[1], test.labels)
    figures = {
        "zero-shot top-1 (its 6 templates, label-space names)": f"{zero_shot:.2f}%",
        "linear probe top-1 (frozen image embeddings)": f"{probe:.2f}%",
    }
    (folder / "measures.json").write_text(
        json.dumps(
            {"zero_shot_top1": zero_shot, "linear_probe_top1": probe, "templates": list(CLIP_TEMPLATES)}, indent=1
        )
    )
    loss_plot(folder / "loss.png", {"contrastive (InfoNCE)": (log["steps"], log["losses"])})
    naming = "; ".join(
        f"{name}: " + ", ".join(f"{word} {p:.0%}" for word, p in words.items()) for name, words in CLIP_NAMING.items()
    )
    write_card(
        folder,
        "Toy CLIP: open_clip ViT trained contrastively on Fashion-MNIST",
        "An open_clip CLIP (config in `open_clip_config.json`; open_clip's own BPE tokenizer) whose captions "
        "name each class loosely, as web captions do, and never by three of the label-space names (pullover, "
        "coat, sneaker): its image tower learns the classes, its zero-shot head from the label-space names is "
        "biased. Load it with "
        "`clip.model: local-dir:synthvision/data/toy/clip` and `clip.templates` set to the templates below.",
        {
            "data": SPLITS,
            "architecture": f"ViT {TOY_CLIP_CONFIG['vision_cfg']}, text {TOY_CLIP_CONFIG['text_cfg']}, "
            f"embed {TOY_CLIP_CONFIG['embed_dim']}",
            "captions": f"a template ({'; '.join(CLIP_TEMPLATES)}) around a word drawn per image: {naming}",
            "recipe": f"symmetric InfoNCE, learnt temperature, AdamW lr {settings['lr']} "
            f"(warmup {settings['warmup']}, cosine), weight decay {settings['weight_decay']}, "
            f"batch {settings['batch_size']}, {settings['epochs']} epochs, bf16 autocast; weights stored as float16",
            "steps": str(log["steps"][-1]),
            "seed": str(settings["seed"]),
            "wall time": f"{log['seconds']} s ({record['machine']})",
            "retrain": "`python -m synthvision.toy clip`",
        },
        figures,
        "loss.png",
    )
    print(f"clip: zero-shot {zero_shot:.2f}%, linear probe {probe:.2f}% ({log['seconds']} s)")


def _glide(args: argparse.Namespace) -> None:
    from synthvision.models.generators.glide.tokenizer import GlideTokenizer
    from synthvision.toy.glide_training import TrainSettings, save_toy_glide, toy_tokenizer, train_glide_model

    vocab, merges = toy_tokenizer(args.seed)
    steps, batch_size = GLIDE_SCHEDULES[args.kind]
    settings = TrainSettings(
        steps=args.steps or steps, batch_size=args.batch_size or batch_size, lr=args.lr, seed=args.seed
    )
    started = time.time()

    def progress(step: int, loss: float) -> None:
        print(f"{args.kind} step {step} loss {loss:.4f} ({time.time() - started:.0f} s)", flush=True)

    model, log = train_glide_model(
        args.kind,
        load_split("train", args.fashion_mnist),
        GlideTokenizer(vocab, merges),
        settings,
        args.work_dir,
        progress,
    )
    folder = args.out / "glide"
    save_toy_glide(folder, {args.kind: model}, vocab, merges)
    (folder / f"{args.kind}-training.json").write_text(
        json.dumps({"settings": vars(settings), "log": vars(log), "machine": _machine()})
    )
    if all((folder / f"{kind}-training.json").is_file() for kind in ("base", "upsample")):
        _glide_card(args)


def _glide_card(args: argparse.Namespace) -> None:
    from synthvision.toy.captions import GLIDE_SENTENCES, GLIDE_TEMPLATES
    from synthvision.toy.cards import loss_plot, write_card
    from synthvision.toy.glide_training import CAPTION_DROP
    from synthvision.toy.judge import load_judge
    from synthvision.toy.measures import class_prompts, fidelity, glide_samples

    folder = args.out / "glide"
    records = {kind: json.loads((folder / f"{kind}-training.json").read_text()) for kind in ("base", "upsample")}
    judge = load_judge(args.out / "judge")
    prompts, labels, seeds = class_prompts(args.samples_per_class)
    figures = {}
    for guidance in (1.0, 3.0):
        images = glide_samples(str(folder), prompts, seeds, guidance)
        figures[f"judge top-1 on {len(images)} samples, guidance {guidance:g} (base 50 steps, upsampler fast27)"] = (
            f"{fidelity(judge, images, labels):.2f}%"
        )
    loss_plot(
        folder / "loss.png",
        {kind: (record["log"]["steps"], record["log"]["losses"]) for kind, record in records.items()},
    )
    arch = json.loads((folder / "glide.json").read_text())
    write_card(
        folder,
        "Toy GLIDE: a text-conditional 16 px base and 16 -> 32 px upsampler",
        "synthvision's GLIDE architecture (the released module tree) at toy size, trained as GLIDE was: noise "
        "prediction plus the learned-variance bound term, captions dropped 20% of the time for classifier-free "
        "guidance. Load it with "
        "`generator.backend: glide`, `generator.model: synthvision/data/toy/glide`, `generator.resolution: 32`.",
        {
            "data": TRAIN_SPLIT + "; base on 16 px, upsampler 16 -> 32 px (bicubic resizes of the 28 px images)",
            "base": f"{arch['base']}",
            "upsampler": f"{arch['upsample']}",
            "captions": f"{len(GLIDE_TEMPLATES)} templates and {len(GLIDE_SENTENCES)} sentences around the "
            f"class name; {CAPTION_DROP:.0%} replaced by the empty caption",
            "tokenizer": "byte-level BPE trained with `tokenizers` on the captions, GPT-2's encoder.json / "
            "vocab.bpe format",
            **{
                f"{kind} recipe": f"AdamW lr {r['settings']['lr']} (warmup {r['settings']['warmup']}), "
                f"batch {r['settings']['batch_size']}, {r['settings']['steps']} steps, "
                f"EMA {r['settings']['ema_decay']}, "
                f"bf16 autocast; weights stored as float16; {r['log']['seconds']:.0f} s ({r['machine']})"
                for kind, r in records.items()
            },
            "seed": str(args.seed),
            "retrain": "`python -m synthvision.toy glide base`, then `glide upsample`",
        },
        figures,
        "loss.png",
    )
    print("glide:", figures)


def _all(args: argparse.Namespace) -> None:
    for run in (_data, _judge, _clip):
        run(args)
    for kind in ("base", "upsample"):
        _glide(argparse.Namespace(**{**vars(args), "kind": kind}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m synthvision.toy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=TOY_DIR, help="where the toy world's files go (default: the package's)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=WORK_DIR, help="checkpoints of training runs (a rerun continues them)"
    )
    parser.add_argument(
        "--fashion-mnist", type=Path, default=DEBIAN_FOLDER, help="folder of the Fashion-MNIST idx files"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("data", help="the shipped real test subset and train pool").set_defaults(run=_data)
    judge = commands.add_parser("judge", help="the judge classifier (real train images only)")
    judge.add_argument("--epochs", dest="judge_epochs", type=int, default=6)
    judge.set_defaults(run=_judge)
    clip = commands.add_parser("clip", help="the toy CLIP")
    clip.add_argument("--epochs", dest="clip_epochs", type=int, default=5)
    clip.set_defaults(run=_clip)
    glide = commands.add_parser("glide", help="the toy GLIDE base (16 px) or upsampler (16 -> 32 px)")
    glide.add_argument("kind", choices=["base", "upsample"])
    glide.add_argument("--steps", type=int, default=None, help="default: base 9000, upsample 3000")
    glide.add_argument("--batch-size", type=int, default=None, help="default: base 128, upsample 64")
    glide.add_argument("--lr", type=float, default=3e-4)
    glide.add_argument(
        "--samples-per-class", type=int, default=50, help="samples the model card's figures are measured on"
    )
    glide.set_defaults(run=_glide)
    commands.add_parser("clip-card", help="measure the trained toy CLIP and write its model card").set_defaults(
        run=_clip_card
    )
    card = commands.add_parser("glide-card", help="measure the trained toy GLIDE and write its model card")
    card.add_argument("--samples-per-class", type=int, default=50)
    card.set_defaults(run=_glide_card)
    everything = commands.add_parser("all", help="data, judge, clip, glide base, glide upsample, with their defaults")
    everything.set_defaults(
        run=_all, judge_epochs=6, clip_epochs=5, steps=None, batch_size=None, lr=3e-4, samples_per_class=50
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.run(args)
