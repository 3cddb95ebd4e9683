"""Compact weights: values a small bundle can store exactly.

glip-nano ships inside the repository, where 40 MB is the budget, yet its text encoder alone is
22.6M parameters. Rounding the trained weights once, here, to values that fp16 (and, for the
word-embedding table, int8 with one scale per row) represent exactly lets the exporter store
them at 2 (1) bytes per value *losslessly*: the ONNX graph computes in fp32 with exactly the
weights of the PyTorch model, so export parity stays exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def row_scales(weight: torch.Tensor) -> torch.Tensor:
    """The smallest power of two per row with |w| / scale <= 127. Powers of two make k * scale
    exact in fp32 and let the exporter recover the scale from the rounded values alone."""
    peak = weight.abs().amax(dim=1, keepdim=True).clamp_min(2.0**-100)
    return torch.exp2(torch.ceil(torch.log2(peak / 127.0)))


def int8_rows(weight: torch.Tensor) -> torch.Tensor:
    """Each row rounded to k * scale_row with k in [-127, 127] (symmetric per-row int8)."""
    scale = row_scales(weight)
    return torch.round(weight / scale).clamp(-127, 127) * scale


@torch.no_grad()
def round_weights(model: nn.Module, int8_embeddings: bool = True, int8_text: bool = True) -> None:
    """fp16-round every float parameter and buffer; int8-round word-embedding tables and (with
    ``int8_text``) every matrix of the language backbone, whose 22M values dominate small models."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point():
            continue
        text_matrix = int8_text and name.startswith("language_backbone") and tensor.ndim == 2
        if (int8_embeddings and name.endswith("word_embeddings.weight")) or text_matrix:
            tensor.copy_(int8_rows(tensor.float()))
        else:
            tensor.copy_(tensor.half().float())


def round_for_export(model: nn.Module, source: dict[str, Any]) -> dict[str, Any]:
    """``--compact``: round ``model`` in place before it is exported; returns the provenance that says so."""
    round_weights(model)
    return {**source, "rounded": "fp16 weights, int8-row text encoder matrices (glip export --compact)"}
