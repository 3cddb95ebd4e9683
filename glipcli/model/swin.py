"""Swin Transformer v1, detection flavour (GLIP_SPEC section 5.1).

Written so that ONNX export keeps height and width dynamic: padding sizes come from integer
arithmetic on tensor shapes, the window padding is always applied (possibly by zero rows), and
the shifted-window mask is built from ``arange`` comparisons instead of slice assignment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glipcli.config import SwinConfig


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def relative_position_index(window: int) -> Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (rel[..., 0] + window - 1) * (2 * window - 1) + (rel[..., 1] + window - 1)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: (num_windows*B, N, C); mask: (num_windows, N, N) of 0 / -100, or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(-1, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape(-1, self.num_heads, n, n)
        attn = attn.float().softmax(dim=-1).to(v.dtype)  # fp32 softmax also in fp16 graphs
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, Hp, Wp, C) -> (num_windows*B, window*window, C), windows row-major."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    c = windows.shape[-1]
    x = windows.reshape(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shift_mask(hp: int | Tensor, wp: int | Tensor, window: int, shift: int, device: torch.device) -> Tensor:
    """The -100 mask of shifted windows on the padded grid, from arange comparisons."""

    def regions(size: int | Tensor) -> Tensor:
        idx = torch.arange(size, device=device)
        return (idx >= size - window).long() + (idx >= size - shift).long()

    ids = regions(hp)[:, None] * 3 + regions(wp)[None, :]  # (Hp, Wp) region id 0..8
    windows = window_partition(ids[None, :, :, None].float(), window).squeeze(-1)  # (nW, w*w)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, h: int, w: int, mask: Tensor) -> Tensor:
        b, _, c = x.shape
        ws = self.window
        shortcut = x
        y = self.norm1(x).reshape(b, h, w, c)
        pad_b = (ws - h % ws) % ws
        pad_r = (ws - w % ws) % ws
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws), mask if self.shift else None)
        y = window_reverse(y, ws, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = shortcut + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, _, c = x.shape
        x = x.reshape(b, h, w, c)
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, h: int, w: int) -> tuple[Tensor, Tensor | None]:
        ws = self.window
        hp = h + (ws - h % ws) % ws
        wp = w + (ws - w % ws) % ws
        mask = shift_mask(hp, wp, ws, ws // 2, x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, h, w, mask)
        down = self.downsample(x, h, w) if self.downsample is not None else None
        return x, down


class PatchEmbed(nn.Module):
    """Image to stride-``patch`` tokens: GLIP's linear patch projection, or a convolutional stem.

    Both pad the input to a multiple of ``patch`` first, so the token grid is ceil(H / patch) either
    way. The conv stem (``stem_channels``, Xiao et al. 2021) sees each pixel with its neighbours
    before any attention: in a probe of glip-nano's stride-8 features, the shape of objects at
    detection scale stayed at chance with 4x4 linear patches (0.17 of 8 classes after 65,000
    windows) and reached 0.34 with the stem. Trained as glip-nano for 10,000 steps (a run slowed by
    other work on the machine) it scored lower (docs/glip-nano.md), so no preset uses it yet.
    """

    def __init__(self, patch: int, dim: int, stem_channels: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.patch = patch
        if not stem_channels:
            self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        else:
            strided = patch.bit_length() - 1
            layers: list[nn.Module] = []
            width = 3
            for i, out in enumerate(stem_channels):
                stride = 2 if i < strided else 1
                layers += [nn.Conv2d(width, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                width = out
            self.proj = nn.Sequential(*layers, nn.Conv2d(width, dim, 1))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        return self.proj(x)


class SwinTransformer(nn.Module):
    """Returns the stage outputs C2..C5 as (B, C, H, W); C2 has no norm (Identity in GLIP)."""

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim, cfg.stem_channels)
        n = len(cfg.depths)
        self.layers = nn.ModuleList(
            SwinStage(cfg.embed_dim * 2**i, cfg.depths[i], cfg.num_heads[i], cfg.window_size, cfg.mlp_ratio, i < n - 1)
            for i in range(n)
        )
        self.out_channels = cfg.out_channels
        # Official names: norm1..norm3 (norm0 is an Identity for *-RETINANET bodies).
        for i in range(1, n):
            self.add_module(f"norm{i}", nn.LayerNorm(self.out_channels[i]))

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.patch_embed(images)
        b, c, h, w = x.shape
        x = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        outs = []
        for i, stage in enumerate(self.layers):
            out, down = stage(x, h, w)
            if i > 0:
                out = getattr(self, f"norm{i}")(out)
            outs.append(out.reshape(b, h, w, self.out_channels[i]).permute(0, 3, 1, 2))
            if down is not None:
                x = down
                h, w = (h + 1) // 2, (w + 1) // 2
        return outs
