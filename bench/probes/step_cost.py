"""What one step of `glip train --config glip-nano` costs with each image-side design of
bench.probes.shapes_at_scale: the whole model (Swin, FPN, VL-DyHead, MiniLM) and GLIP's loss,
the recipe's batches of 2 generated images (short sides 288-352 on a 384 canvas, scaled by 4/3 for
``side512``) under bfloat16 autocast, the Trainer's own train_step. Timed in CPU seconds of one
thread (``time.process_time``, which other work on a shared machine does not inflate), designs
interleaved round by round on the same batches; the ratio to the stock model is what carries over
to the 100-minute budget of 2 cores (the shipped 13,000 steps are 1.00x).

    nice -n 15 python -m bench.probes.step_cost --budget 120 --design stock --design stem16-32

Measured 2026-12-02, 17 steps each (docs/glip-nano.md, "Shapes at detection scale, probed"): stock
0.622 CPU-s a step; stem16-32 1.01x, stem8-16 0.99x, depth2-2 1.13x, embed48 1.14x, side512 1.54x.
The conv stem's 1.5x of the 10,000-step retrain was the loaded machine, not the stem.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.probes.shapes_at_scale import design
from glipcli.presets import preset
from glipcli.tokenizer import build_tokenizer
from glipcli.train.data import collate
from glipcli.train.recipe import NANO_PRETRAIN
from glipcli.train.synth import TRAIN_COMBOS, SyntheticGrounding
from glipcli.train.trainer import TrainConfig, Trainer, initial_model


def trainer_for(spec: str, out: Path) -> Trainer:
    d = design(spec)
    nano = preset("glip-nano")
    cfg = nano.replace(swin=d.swin_config())
    k = d.short_side / 384
    recipe = {**NANO_PRETRAIN, "scales": tuple(round(s * k) for s in NANO_PRETRAIN["scales"])}
    recipe["max_size"] = round(NANO_PRETRAIN["max_size"] * k)
    train_cfg = TrainConfig(**recipe, workers=0, freeze_token_projection=True)
    source = SyntheticGrounding(seed=0, length=64, combos=TRAIN_COMBOS, max_phrases=40)
    return Trainer(initial_model(cfg, 0), source, build_tokenizer(), train_cfg, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=120, help="CPU seconds of timed steps, all designs")
    parser.add_argument("--design", action="append", help="designs of bench.probes.shapes_at_scale; repeatable")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    specs = args.design or ["stock"]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {s: trainer_for(s, Path(tmp) / s) for s in specs}
        batches = {}
        for s, t in trainers.items():
            canvas = -(-t.cfg.max_size // 32) * 32
            batches[s] = [collate([t.dataset[2 * i], t.dataset[2 * i + 1]], canvas=canvas) for i in range(8)]
            for b in batches[s][:2]:  # warm-up: oneDNN plans, allocator
                t.train_step(b)
        spent = dict.fromkeys(specs, 0.0)
        steps = dict.fromkeys(specs, 0)
        while sum(spent.values()) < args.budget:
            for s, t in trainers.items():
                started = time.process_time()
                t.train_step(batches[s][steps[s] % len(batches[s])])
                spent[s] += time.process_time() - started
                steps[s] += 1
    base = spent[specs[0]] / steps[specs[0]]
    print(f"| design | CPU-s per step (1 thread) | vs {specs[0]} | steps in the time of 13,000 stock steps |")
    print("|---|---|---|---|")
    for s in specs:
        per = spent[s] / steps[s]
        print(f"| {s} | {per:.3f} ({steps[s]} steps) | {per / base:.2f}x | {13000 * base / per:,.0f} |")


if __name__ == "__main__":
    main()
