"""FLOPs of each graph, counted once at export and stored in the manifest.

torch's ``FlopCounterMode`` counts the dense arithmetic of an eager forward: matrix products,
convolutions and attention, two FLOPs per multiply-add. Element-wise work, softmax, normalisation
and sampling are left out, so the figure is what the CPU's FMA units must do, the right numerator
for "achieved GFLOP/s against the machine's matrix-multiply peak" (bench.ort_vs_torch).

The count depends on the input: the image size (backbone and head) and the caption's length
(text and head). The manifest records it at the model's test size, the largest padded input a
landscape image gets (``min_size`` x ``max_size``, both rounded up to ``size_divisibility``), and
a full chunk of ``max_query_len`` tokens; the bench counts its own inputs with :func:`count_flops`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from glipcli.config import GLIPConfig
from glipcli.model.glip import GLIP

CLS, SEP = 101, 102  # BERT's markers; the token ids do not change the count, only their number


def reference_input(cfg: GLIPConfig) -> tuple[tuple[int, int], int]:
    """((H, W), tokens) the manifest's count is made at: the test size, landscape, and a full chunk."""
    step = cfg.input.size_divisibility or 1
    height, width = (math.ceil(side / step) * step for side in (cfg.input.min_size, cfg.input.max_size))
    return (height, width), cfg.language.max_query_len


@torch.no_grad()
def count_flops(model: GLIP, image_hw: tuple[int, int], tokens: int) -> dict[str, int]:
    """FLOPs of the text, backbone and head graphs for one (H, W) image and a ``tokens``-long caption."""
    model.eval()
    ids = torch.full((1, tokens), 1000, dtype=torch.long)
    ids[0, 0], ids[0, -1] = CLS, SEP
    mask = torch.ones_like(ids)
    images = torch.zeros(1, 3, *image_hw)
    counts = {}
    with FlopCounterMode(display=False) as counter:
        text = model.encode_text(ids, mask)
    counts["text"] = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        levels = model.encode_image(images)
    counts["backbone"] = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model.decode(model.head(levels, text, mask))
    counts["head"] = counter.get_total_flops()
    return counts


def manifest_entry(model: GLIP) -> dict[str, Any]:
    """The manifest's ``flops``: counts per graph at :func:`reference_input`, and how they were made."""
    image_hw, tokens = reference_input(model.cfg)
    return {
        "image_hw": list(image_hw),
        "tokens": tokens,
        "graphs": count_flops(model, image_hw, tokens),
        "counter": "torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions, attention; 2 per MAC)",
    }
