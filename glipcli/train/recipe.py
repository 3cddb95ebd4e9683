"""glip-nano's pre-training recipe: the settings `glip train --config glip-nano` uses by default,
so that one command reproduces the shipped model. Torch-free, for the CLI's help.

Why these values: on 2 CPU cores a step of 2 to 8 images costs the same per image (0.19 s), so
the batch decides how many optimiser steps the ~85 minutes buy, and glip-nano -- a Swin trained
from scratch, which learns colours at once and shapes slowly -- gained from each halving down to 2.
The same 19,600 images as 9,800 steps of 2 (lr 5e-4, ~sqrt(1/2) of batch 4's 7e-4) scored mAP@0.5
0.620 on the validation set against 0.553 as 4,900 steps of 4 (shape of the best label right for
0.68 of the objects, against 0.63). Batch 8 -> 4 had helped before, with short sides 288-352 on a
384 canvas (from 256-320 on 320) so that small shapes get more pixels.
Batch 1 is past the turn: its run cost 0.289 s per image against batch 2's 0.264 (wall time; the
update, paid once per step, is no longer shared), so 16,000 steps of 1 (lr 3.5e-4) filled 77
minutes, and they scored 0.481 on the validation set (the best label's shape right for 0.57 of
the objects, its colour for 0.80 against 0.88).
bfloat16 autocast (``precision``; weights, optimiser and loss stay float32, as GLIP trains under fp16
autocast) made a step 1.42x faster here (0.371 s against 0.527 per step of 2, whole runs), with the
same loss per step; the minutes it saved went to more steps: 13,000 steps of 2 in 80 minutes
scored 0.661 on the validation set against 9,800 steps in float32 (86 minutes) 0.620, the best
label's shape right for 0.74 of the objects against 0.68. That was on cores with AVX512-BF16; where
bfloat16 is emulated (AVX2 only) a bf16 step is 5x slower than fp32, so the trainer falls back to
fp32 there (glipcli.train.policy.native_bf16): 0.49 s a step on 2 idle AVX2 cores, so the 13,000 steps take
about 106 minutes (3.6 hours on a loaded machine).
A convolutional stem in place of the 4x4 patch embedding (``SwinConfig.stem_channels=(16, 32)``)
ran 10,000 steps in 99 minutes with other work on the machine (0.59 s a step against the shipped
run's 0.37; an interleaved measurement of the step alone later gave 1.01x, bench/probes/step_cost.py,
so the load, not the stem, made it slow); the model scored mAP@0.5 0.630 / 0.837 / 0.721 on the
test sets (trained / held-out / examples) against the first stage's (the recipe's model) 0.659 / 0.883 / 0.904, so the
recipe keeps GLIP's patch embedding; trained the full 13,000 steps and the second stage, the stem scored
0.736 / 0.887 / 0.848 against the patch embedding's 0.734 / 0.894 / 0.948 and lost at the defaults (docs/glip-nano.md).
Also tried and worse: resizing as at inference (short side 352-416, long side up to 768) and training on
random 384 x 384 windows, which fills the canvas with picture, scored mAP@0.5 0.359 on the
validation set against batch 4's 0.465 (GLIP's mean scoring), for the same 4,900 steps.
"""

from __future__ import annotations

from typing import Any

NANO_PRETRAIN: dict[str, Any] = {
    "steps": 13000,
    "batch_size": 2,
    "lr": 5e-4,
    "warmup": 300,
    "scales": (288, 320, 352),
    "max_size": 384,
    "precision": "bf16",
}
