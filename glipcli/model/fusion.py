"""Bi-directional image-text attention, GLIP's "MHA-B" deep fusion (GLIP_SPEC section 6.2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glipcli.config import HeadConfig

CLAMP = 50000.0
TEXT_MASK_FILL = -9e15


class BiMultiHeadAttention(nn.Module):
    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, clamp: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.clamp = clamp
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.l_proj = nn.Linear(l_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)
        for lin in (self.v_proj, self.l_proj, self.values_v_proj, self.values_l_proj, self.out_v_proj, self.out_l_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, n, d)

    def _merge(self, x: Tensor) -> Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)

    def forward(self, v: Tensor, lang: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """v: (B, N, Dv) normalised visual tokens; lang: (B, T, Dl) normalised text; mask: (B, T)."""
        q = self._heads(self.v_proj(v) * self.scale)
        k = self._heads(self.l_proj(lang))
        value_v = self._heads(self.values_v_proj(v))
        value_l = self._heads(self.values_l_proj(lang))
        scores = q @ k.transpose(-1, -2)  # (B, h, N, T)
        if self.clamp:
            scores = scores.clamp(-CLAMP, CLAMP)
        # text <- image: every token attends over all N visual positions (max-subtracted)
        scores_t = scores.transpose(-1, -2)
        scores_l = scores_t - scores_t.max(dim=-1, keepdim=True).values
        if self.clamp:
            scores_l = scores_l.clamp(-CLAMP, CLAMP)
        attn_l = scores_l.softmax(dim=-1)
        # image <- text: padded tokens get -9e15, valid ones +1 (a no-op shift kept for fidelity)
        valid = mask.to(scores.dtype)
        text_bias = torch.where(valid > 0, torch.ones_like(valid), torch.full_like(valid, TEXT_MASK_FILL))
        attn_v = (scores + text_bias[:, None, None, :]).softmax(dim=-1)
        delta_v = self.out_v_proj(self._merge(attn_v @ value_l))
        delta_l = self.out_l_proj(self._merge(attn_l @ value_v))
        return delta_v, delta_l


class BiAttentionBlock(nn.Module):
    """Layer-scaled residual on the *normalised* inputs (GLIP_SPEC section 12, item 1)."""

    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, clamp: bool, init_scale: float) -> None:
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads, clamp)
        self.gamma_v = nn.Parameter(torch.full((v_dim,), init_scale))
        self.gamma_l = nn.Parameter(torch.full((l_dim,), init_scale))

    def forward(self, v: Tensor, lang: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        v = self.layer_norm_v(v)
        lang = self.layer_norm_l(lang)
        delta_v, delta_l = self.attn(v, lang, mask)
        return v + self.gamma_v * delta_v, lang + self.gamma_l * delta_l


class VLFuse(nn.Module):
    """Fuses all five pyramid levels jointly (flattened level-major, row-major) with the text."""

    def __init__(self, cfg: HeadConfig, lang_dim: int) -> None:
        super().__init__()
        self.b_attn = BiAttentionBlock(
            cfg.joint_emb_size, lang_dim, cfg.fusion_dim, cfg.fusion_heads, cfg.clamp_fusion, 1.0 / cfg.num_convs
        )

    def forward(self, visual: list[Tensor], lang: Tensor, mask: Tensor) -> tuple[list[Tensor], Tensor]:
        shapes = [f.shape for f in visual]
        flat = torch.cat([f.flatten(2) for f in visual], dim=2).transpose(1, 2)  # (B, N, C)
        fused_v, fused_l = self.b_attn(flat, lang, mask)
        fused_v = fused_v.transpose(1, 2)
        out, start = [], 0
        for b, c, h, w in shapes:
            out.append(fused_v[:, :, start : start + h * w].reshape(b, c, h, w))
            start = start + h * w
        return out, fused_l
