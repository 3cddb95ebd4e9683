"""The BERT encoder layers inside the DyHead (GLIP_SPEC section 6.3), with GLIP's clamps.

Parameter names follow transformers' BertLayer so official checkpoints load unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLAMP = 50000.0


class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, clamp: bool) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.clamp = clamp
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, extended_mask: Tensor) -> Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if self.clamp:
            scores = scores.clamp(-CLAMP, CLAMP)
        probs = (scores + extended_mask).softmax(dim=-1)
        b, _, n, _ = probs.shape
        return (probs @ v).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)


class BertSelfOutput(nn.Module):
    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float, clamp: bool) -> None:
        super().__init__()
        self.self = BertSelfAttention(hidden, heads, clamp)
        self.output = BertSelfOutput(hidden, eps)

    def forward(self, x: Tensor, extended_mask: Tensor) -> Tensor:
        return self.output(self.self(x, extended_mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x).clamp(-CLAMP, CLAMP)).clamp(-CLAMP, CLAMP)


class BertOutput(nn.Module):
    def __init__(self, hidden: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(intermediate, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        x = self.dense(x).clamp(-CLAMP, CLAMP)
        return self.LayerNorm(x + residual).clamp(-CLAMP, CLAMP)


def extended_attention_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, T) 0/1 -> (B, 1, 1, T) additive mask with the dtype's minimum, as transformers does."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class BertEncoderLayer(nn.Module):
    def __init__(self, bert: dict[str, Any], clamp_attention: bool) -> None:
        super().__init__()
        if bert.get("hidden_act", "gelu") != "gelu":
            raise ValueError("only GELU BERT layers are supported")
        hidden, inter, eps = bert["hidden_size"], bert["intermediate_size"], bert["layer_norm_eps"]
        self.attention = BertAttention(hidden, bert["num_attention_heads"], eps, clamp_attention)
        self.intermediate = BertIntermediate(hidden, inter)
        self.output = BertOutput(hidden, inter, eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        attn = self.attention(x, extended_attention_mask(mask, x.dtype))
        return self.output(self.intermediate(attn), attn)
