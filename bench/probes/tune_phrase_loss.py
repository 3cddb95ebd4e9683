"""Prompt tuning of glip-nano's trained (or held-out) names with and without the name ranking term.

glip-nano scores a name by the geometric mean of its words' probabilities, and COCO mAP ranks
those scores; per-word targets alone never say that "red hexagon" must outscore "red circle" on
a red hexagon. ``glipcli.train.loss.name_rank_loss`` adds that; this probe tunes the prompt of
all 56 trained names (K = 5 from a 300-image pool, 100 steps of 4, lr 0.01) at several of its
weights and scores each tuned bundle on fresh sets, against the untuned model.

    python -m bench.probes.tune_phrase_loss --weights 0 1 --temperatures 1 0.5 --test-seeds 777 781   # 15 min
    python -m bench.probes.tune_phrase_loss --names held-out --weights 0 1 --temperatures 1 0.5 --test-seeds 779

Measured 2026-12-02, K = 5, mAP@0.5 on 100 images each (the weight and temperature were chosen
here; docs/learning.md confirms them on other seeds). 56 trained names, seeds 777 / 781: untuned
0.690 / 0.677; no term (per-word targets alone) 0.709 / 0.703; weight 1 at temperature 1
0.723 / 0.713, at 0.5 0.728 / 0.721, at 0.25 0.719 / 0.718; weight 3 (temperature 1) 0.722 /
0.702; 0.3: 0.717 / 0.712. 8 held-out names, seed 779: untuned 0.920; no term 0.956; weight 1 at
temperature 1 0.935, at 0.5 0.956, at 0.25 0.961.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from bench.learning import _eval_bundle
from glipcli.train.loss import LossConfig
from glipcli.train.synth import HELD_OUT, TRAIN_COMBOS, write_detection_set
from glipcli.train.trainer import TrainConfig
from glipcli.train.tune import tune_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0], help="name_rank_loss weights")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0], help="name_rank_loss temperatures")
    parser.add_argument("--names", choices=["trained", "held-out"], default="trained")
    parser.add_argument("--work", type=Path, default=Path("/tmp/glip-phrase"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[777, 781])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    combos, pool_seed = (TRAIN_COMBOS, 10) if args.names == "trained" else (tuple(sorted(HELD_OUT)), 12)
    pool = args.work / f"{args.names}-pool" / "annotations.json"
    if not pool.exists():  # bench.learning's pools
        write_detection_set(pool.parent, 300, pool_seed, combos)
    tests = {}
    for seed in args.test_seeds:
        tests[seed] = args.work / f"{args.names}-test{seed}" / "annotations.json"
        if not tests[seed].exists():
            write_detection_set(tests[seed].parent, 100, seed, combos)
    row: dict = {"variant": "untuned"}
    for seed, test in tests.items():
        row[f"map50_{seed}"] = _eval_bundle(Path("exported/glip-nano"), test, None, args.threads)["ap50"]
    print(json.dumps(row), flush=True)
    for weight, temperature in itertools.product(args.weights, args.temperatures):
        cfg = TrainConfig(
            steps=args.steps,
            batch_size=4,
            lr=args.lr,
            warmup=max(1, args.steps // 10),
            weight_decay=0.25,
            seed=0,
            threads=args.threads,
            workers=0,
            trainable="prompt",
            loss=LossConfig(name_weight=weight, name_temperature=temperature),
        )
        start = time.perf_counter()
        out = args.work / f"{args.names}-tuned-{weight}-{temperature}"
        tune_prompt("glip-nano", None, pool, pool.parent / "images", out, cfg, shots=args.shots, overwrite=True)
        row = {"name_weight": weight, "temperature": temperature, "tune_s": round(time.perf_counter() - start, 1)}
        for seed, test in tests.items():
            row[f"map50_{seed}"] = _eval_bundle(out, test, None, args.threads)["ap50"]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
