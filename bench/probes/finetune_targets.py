"""Fine-tuning glip-nano on its own 56 names with GLIP's phrase targets against per-word targets
(glipcli.train.targets), from the shipped bundle, on fresh generated sets.

    python -m bench.probes.finetune_targets --steps 60 --lr 1e-4

Measured 2026-12-02 (60 training images seed 901, 80 test images seed 777, 60 steps of 4, full
mode, 2 cores, 6 minutes): mAP@0.5 zero-shot 0.703, phrase targets 0.671, per-word targets 0.720;
with the name ranking term that per-word targets now carry (glipcli.train.loss.name_rank_loss) 0.727.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from glipcli.tokenizer import build_tokenizer
from glipcli.train.coco_data import load_detection_data
from glipcli.train.finetune import finetune, initial_weights
from glipcli.train.synth import TRAIN_COMBOS, write_detection_set
from glipcli.train.targets import TARGETS
from glipcli.train.trainer import TrainConfig
from glipcli.train.validate import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="glip-nano")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--train-images", type=int, default=60)
    parser.add_argument("--test-images", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    tokenizer = build_tokenizer()
    with tempfile.TemporaryDirectory(prefix="glip-targets-") as tmp:
        work = Path(tmp)
        train = write_detection_set(work / "train", args.train_images, 901, TRAIN_COMBOS)
        test = write_detection_set(work / "test", args.test_images, 777, TRAIN_COMBOS)
        model, _ = initial_weights(args.model)
        rows = {"zero-shot": evaluate_model(model, tokenizer, test.parent).map50}
        for targets in TARGETS:
            model, _ = initial_weights(args.model)
            data = load_detection_data(train, train.parent / "images", tokenizer, model.cfg.language.max_query_len)
            cfg = TrainConfig(
                steps=args.steps,
                batch_size=4,
                lr=args.lr,
                warmup=max(1, args.steps // 10),
                threads=args.threads,
                workers=0,
                checkpoint_every=args.steps,
            )
            finetune(model, data, work / targets, cfg, tokenizer=tokenizer, targets=targets)
            rows[f"{targets} targets"] = evaluate_model(model, tokenizer, test.parent).map50
            print(json.dumps({k: round(v, 4) for k, v in rows.items()}), flush=True)


if __name__ == "__main__":
    main()
