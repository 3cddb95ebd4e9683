"""Learning from labels on glip-nano (issues 9, 22): prompt tuning and teacher -> student.

0. Prompt tuning of whole vocabularies (issue 22): the prompt of all 56 trained names, and of the
   8 held-out names, tuned on K labelled images per name (`glip tune --shots K`, its targets: per
   word for glip-nano; lr --vocab-lr); mAP@0.5 on fresh images against the untuned model.
1. Prompt tuning: K = 1, 5, 10 labelled images of a held-out combination ("orange star", never
   drawn nor named in pre-training) tune its prompt (`glip tune`); AP on a fresh test set,
   against the zero-shot prompt and a hand-written attribute prompt.
2. Teacher -> student on four held-out combinations: a teacher (glip-nano fine-tuned on a small
   gold set, exported) pseudo-labels unlabelled images (`glip label --threshold 0`); a student
   starting from glip-nano trains on the gold set plus the pseudo-labels above a threshold
   (`glip train --data ... --pseudo ...`), against the same student on the gold set alone (which
   is the teacher), same steps, batch size and seed.

All data is generated here (glipcli.train.synth.write_detection_set, seeds disjoint from
training); every figure is COCO AP from the `glip eval` code path (glipcli.evaluation), on the
tuned bundles for (1) and on the students' PyTorch weights through the same Detector pipeline
for (2). Prints a table and writes JSON. Without --weights the PyTorch model is the bundle's own
(glipcli.export.rebuild).

    python -m bench.learning --bundle exported/glip-nano --work /tmp/glip-learning --json bench/learning.json
    python -m bench.learning --bundle exported/glip-nano --only vocabulary --json runs/vocabulary.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from glipcli.api import Detector
from glipcli.evaluation import evaluate_folder
from glipcli.export.exporter import export_bundle
from glipcli.io.coco import load_coco, write_json_atomic
from glipcli.labelling.folder import label_folder
from glipcli.metrics import Metrics
from glipcli.model.checkpoint import checkpoint_source
from glipcli.prompt import parse_prompt, prompt_from_names
from glipcli.tokenizer import build_tokenizer
from glipcli.train.coco_data import load_detection_data
from glipcli.train.finetune import finetune, initial_weights
from glipcli.train.synth import HELD_OUT, TRAIN_COMBOS, write_detection_set
from glipcli.train.trainer import TrainConfig
from glipcli.train.tune import tune_prompt
from glipcli.train.validate import evaluate_model

TARGET = ("orange", "star")
# Scenes hold the target among objects that share a word with it: the tuned prompt must tell them apart.
NEIGHBOURS = (("orange", "circle"), ("orange", "heart"), ("yellow", "star"), ("red", "star"))
ATTRIBUTE_PROMPT = "orange star: a five-pointed orange shape"
# Teacher -> student tasks: four combinations never seen in pre-training, or four seen ones.
TASKS = {
    "held-out": (("orange", "star"), ("purple", "triangle"), ("green", "heart"), ("blue", "diamond")),
    "seen": (("orange", "circle"), ("purple", "star"), ("green", "triangle"), ("blue", "heart")),
}

# Vocabularies whose whole prompt is tuned at once: every name a run was trained on, and the held-out ones.
VOCABULARIES = {"trained": TRAIN_COMBOS, "held-out": tuple(sorted(HELD_OUT))}

console = Console()


def _metrics(m: Metrics) -> dict[str, float]:
    return {"ap": round(m.map, 4), "ap50": round(m.map50, 4)}


def _eval_bundle(bundle: Path, test: Path, prompt: str | None, threads: int) -> dict[str, float]:
    detector = Detector.load(bundle, device="cpu", threads=threads)
    parsed = parse_prompt(prompt) if prompt else None
    report = evaluate_folder(test, test.parent / "images", detector=detector, prompt=parsed, workers=1)
    return _metrics(report.metrics)


def _only(annotations: Path, name: str) -> Path:
    """The same images with one category: the rest of each scene is background for its prompt."""
    gt = load_coco(annotations)
    (keep,) = [c for c in gt["categories"] if c["name"] == name]
    gt["categories"] = [keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] == keep["id"]]
    path = annotations.with_name(f"{name.replace(' ', '-')}.json")
    write_json_atomic(path, gt)
    return path


def _tune_config(args: argparse.Namespace, steps: int, batch_size: int, lr: float | None = None) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr or args.tune_lr,
        warmup=max(1, steps // 10),
        weight_decay=0.25,
        seed=args.seed,
        threads=args.threads,
        workers=0,
        trainable="prompt",
    )


def vocabulary_tuning(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Each vocabulary's prompt (its names in one prompt, chunked as glip eval chunks it) tuned on
    K images per name drawn from a pool, against zero-shot, on fresh images of the same names."""
    rows: dict[str, dict[str, Any]] = {}
    for offset, (group, combos) in enumerate(VOCABULARIES.items()):
        seed = args.seed + 10 + 2 * offset  # disjoint from the other parts' sets
        pool = write_detection_set(work / f"{group}-pool", args.vocab_pool, seed, combos)
        test = write_detection_set(work / f"{group}-test", args.vocab_test_images, seed + 1, combos)
        rows[f"{group} ({len(combos)} names): zero-shot"] = _eval_bundle(args.bundle, test, None, args.threads)
        console.print(rows, highlight=False)  # a long run shows its figures as they come
        for k in args.vocab_shots:
            start = time.perf_counter()
            cfg = _tune_config(args, args.vocab_steps, 4, args.vocab_lr)
            out = work / f"{group}-tuned-k{k}"
            result = tune_prompt(
                args.bundle, args.weights, pool, pool.parent / "images", out, cfg, shots=k, overwrite=True
            )
            rows[f"{group} ({len(combos)} names): tuned, K = {k}"] = {
                **_eval_bundle(result.bundle.path, test, None, args.threads),
                "images": len(result.data.images),
                "targets": next(iter(result.bundle.prompts.values()))["targets"],
                "seconds": round(time.perf_counter() - start, 1),
            }
            console.print(rows, highlight=False)
    return {
        "test_images": args.vocab_test_images,
        "pool": args.vocab_pool,
        "steps": args.vocab_steps,
        "lr": args.vocab_lr,
        "rows": rows,
    }


def prompt_tuning(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    combos = (TARGET, *NEIGHBOURS)
    name = " ".join(TARGET)
    pool = _only(write_detection_set(work / "pt-train", args.pool, args.seed, combos), name)
    test = write_detection_set(work / "pt-test", args.test_images, args.seed + 1, combos)
    rows = {
        f"zero-shot '{name}'": _eval_bundle(args.bundle, test, name, args.threads),
        f"attribute prompt '{ATTRIBUTE_PROMPT}'": _eval_bundle(args.bundle, test, ATTRIBUTE_PROMPT, args.threads),
    }
    for k in args.shots:
        start = time.perf_counter()
        cfg = _tune_config(args, args.tune_steps, min(4, k))
        out = work / f"tuned-k{k}"
        result = tune_prompt(args.bundle, args.weights, pool, pool.parent / "images", out, cfg, shots=k, overwrite=True)
        rows[f"prompt tuning, K = {k}"] = {
            **_eval_bundle(result.bundle.path, test, name, args.threads),
            "images": len(result.data.images),
            "seconds": round(time.perf_counter() - start, 1),
        }
    return {"target": name, "test_images": args.test_images, "steps": args.tune_steps, "lr": args.tune_lr, "rows": rows}


def _student(
    args: argparse.Namespace, run: Path, gold: Path, pseudo: Path | None, unlabelled: Path, test: Path
) -> tuple[Any, Path, dict[str, Any]]:
    """The base weights fine-tuned on gold (plus pseudo-labels): the same steps, batch and seed."""
    start = time.perf_counter()
    tokenizer = build_tokenizer()
    model, _ = initial_weights(args.weights)
    data = load_detection_data(
        gold,
        gold.parent / "images",
        tokenizer,
        model.cfg.language.max_query_len,
        pseudo=pseudo,
        pseudo_images=unlabelled,
        pseudo_threshold=args.pseudo_threshold,
        seed=args.seed,
    )
    cfg = TrainConfig(
        steps=args.student_steps,
        batch_size=4,
        lr=args.student_lr,
        warmup=max(1, args.student_steps // 10),
        seed=args.seed,
        threads=args.threads,
        trainable=args.student_mode,
        checkpoint_every=args.student_steps,
    )
    weights = finetune(model, data, run, cfg, tokenizer=tokenizer)
    row = {
        **_metrics(evaluate_model(model, tokenizer, test.parent, workers=1)),
        "images": len(data.images),
        "boxes": data.boxes,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return model, weights, row


def teacher_student(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Self-training as in GLIP: a teacher trained on gold labels more images; a student learns from both.

    The teacher is the base model fine-tuned on the gold set (``--teacher gold``, i.e. the
    gold-only student, exported), or the base bundle itself (``--teacher base``).
    """
    task = TASKS[args.task]
    gold = write_detection_set(work / "ts-gold", args.gold, args.seed + 10, task)
    unlabelled = write_detection_set(work / "ts-unlabelled", args.unlabelled, args.seed + 11, task).parent / "images"
    test = write_detection_set(work / "ts-test", args.test_images, args.seed + 12, task)
    rows = {"base model (zero-shot)": _eval_bundle(args.bundle, test, None, args.threads)}
    model, weights, rows["student: gold only"] = _student(args, work / "student-gold", gold, None, unlabelled, test)
    teacher = args.bundle
    if args.teacher == "gold":
        teacher = work / "teacher"
        source = checkpoint_source(weights, model.cfg.name)
        export_bundle(model.eval(), teacher, name="teacher", source=source, overwrite=True)
    pseudo = work / "ts-pseudo.json"
    names = prompt_from_names([" ".join(c) for c in task])
    detector = Detector.load(teacher, device="cpu", threads=args.threads)
    label_folder(unlabelled, names, pseudo, detector=detector, threshold=0.0, workers=1)
    *_, rows["student: gold + pseudo-labels"] = _student(args, work / "student-pseudo", gold, pseudo, unlabelled, test)
    return {
        "task": f"{args.task}: {', '.join(names.names)}",
        "teacher": "base model fine-tuned on the gold set" if args.teacher == "gold" else "base model",
        "gold_images": args.gold,
        "unlabelled_images": args.unlabelled,
        "pseudo_threshold": args.pseudo_threshold,
        "steps": args.student_steps,
        "batch_size": 4,
        "mode": args.student_mode,
        "lr": args.student_lr,
        "rows": rows,
    }


def _table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table("", "AP", "AP@0.5", "images", "s", title=title, title_justify="left")
    for name, m in rows.items():
        table.add_row(name, f"{m['ap']:.3f}", f"{m['ap50']:.3f}", str(m.get("images", "")), str(m.get("seconds", "")))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="the glip-nano bundle")
    parser.add_argument("--weights", type=Path, default=None, help="its checkpoint (default: the bundle's weights)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/glip-learning"), help="data and runs (replaced)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument("--pool", type=int, default=30, help="images to draw the K shots from")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--tune-steps", type=int, default=100)
    parser.add_argument("--tune-lr", type=float, default=5e-2)
    parser.add_argument("--vocab-shots", type=int, nargs="+", default=[5, 20], help="K images per name")
    parser.add_argument("--vocab-pool", type=int, default=300, help="images to draw each vocabulary's shots from")
    parser.add_argument("--vocab-test-images", type=int, default=200)
    parser.add_argument("--vocab-steps", type=int, default=200)
    parser.add_argument("--vocab-lr", type=float, default=1e-2, help="peak lr of the vocabularies' prompt tuning")
    parser.add_argument("--gold", type=int, default=8, help="gold images of the student")
    parser.add_argument("--unlabelled", type=int, default=64, help="images the teacher labels")
    parser.add_argument("--pseudo-threshold", type=float, default=0.4)
    parser.add_argument("--student-steps", type=int, default=160)
    parser.add_argument("--student-mode", default="all", choices=["all", "head"])
    parser.add_argument("--student-lr", type=float, default=1e-4)
    parser.add_argument("--task", choices=sorted(TASKS), default="held-out", help="the student's classes")
    parser.add_argument("--teacher", choices=["gold", "base"], default="gold", help="who writes the pseudo-labels")
    parser.add_argument("--only", choices=["vocabulary", "tuning", "students"], nargs="+", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    start = time.perf_counter()
    results: dict[str, Any] = {"weights": str(args.weights or "the bundle's"), "bundle": str(args.bundle)}
    parts = set(args.only or ["vocabulary", "tuning", "students"])
    if "vocabulary" in parts:
        results["vocabulary"] = vocabulary_tuning(args, args.work)
        console.print(_table("prompt tuning of whole vocabularies: mAP", results["vocabulary"]["rows"]))
    if "tuning" in parts:
        results["prompt_tuning"] = prompt_tuning(args, args.work)
        console.print(
            _table(f"prompt tuning: AP of '{results['prompt_tuning']['target']}'", results["prompt_tuning"]["rows"])
        )
    if "students" in parts:
        results["teacher_student"] = teacher_student(args, args.work)
        console.print(_table("teacher -> student: mAP on the task", results["teacher_student"]["rows"]))
    results["seconds"] = round(time.perf_counter() - start, 1)
    console.print(f"total {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
