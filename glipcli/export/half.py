"""fp16 graphs for GPUs, made on the PyTorch side so the exported graph is the same module code.

The model runs in half precision except the numerically fragile modules, which keep fp32
weights and compute (their inputs are cast up and their outputs back down): LayerNorm and
GroupNorm, BERT and fusion attention (softmax, +-50000 clamps, -9e15 / dtype-minimum masks),
the deformable convolution (fp32 in official GLIP too). Graph inputs and outputs stay fp32 and
box decoding runs in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from transformers.models.bert import modeling_bert

from glipcli.model.bert_layer import BertSelfAttention
from glipcli.model.deform import ModulatedDeformConv
from glipcli.model.fusion import BiMultiHeadAttention

FP32_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    BiMultiHeadAttention,
    BertSelfAttention,
    modeling_bert.BertSelfAttention,
    ModulatedDeformConv,
)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast(v, dtype) for v in value)
    if isinstance(value, list):
        return [_cast(v, dtype) for v in value]
    return value


def _fp32_forward(forward: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = forward(*_cast(args, torch.float32), **{k: _cast(v, torch.float32) for k, v in kwargs.items()})
        return _cast(out, torch.float16)

    return wrapped


@contextlib.contextmanager
def half_precision(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``model`` computes in fp16 except :data:`FP32_MODULES`."""
    patched = []
    model.half()
    for module in model.modules():
        if isinstance(module, FP32_MODULES):
            module.float()
            patched.append((module, module.forward))
            module.forward = _fp32_forward(module.forward)  # type: ignore[method-assign]
    try:
        yield model
    finally:
        for module, forward in patched:
            module.forward = forward  # type: ignore[method-assign]
        model.float()
