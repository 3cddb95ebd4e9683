"""Modulated deformable convolution (DCNv2) in plain PyTorch (GLIP_SPEC section 6.4).

Sampling uses ``grid_sample`` (bilinear, zero padding, pixel-centre coordinates), which matches
the CUDA kernel: corners outside the map contribute 0. It runs on any device and exports to
ONNX ``GridSample`` with dynamic spatial sizes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KERNEL = 3
TAPS = KERNEL * KERNEL


def modulated_deform_conv2d(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int
) -> Tensor:
    """x (B,C,H,W); offset (B,18,Ho,Wo) as (dy,dx) per tap k=3*row+col; mask (B,9,Ho,Wo)."""
    b, c, h, w = x.shape
    ho, wo = offset.shape[-2], offset.shape[-1]
    dev, dt = x.device, x.dtype
    taps = torch.arange(TAPS, device=dev)
    tap_y = (taps // KERNEL).to(dt).reshape(1, TAPS, 1, 1)
    tap_x = (taps % KERNEL).to(dt).reshape(1, TAPS, 1, 1)
    base_y = (torch.arange(ho, device=dev) * stride - padding).to(dt).reshape(1, 1, -1, 1)
    base_x = (torch.arange(wo, device=dev) * stride - padding).to(dt).reshape(1, 1, 1, -1)
    off = offset.reshape(b, TAPS, 2, ho, wo)
    py = base_y + tap_y + off[:, :, 0]
    px = base_x + tap_x + off[:, :, 1]
    # grid_sample(align_corners=False) maps pixel p to (2p + 1) / size - 1
    gx = (2.0 * px + 1.0) / w - 1.0
    gy = (2.0 * py + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], dim=-1).reshape(b, TAPS * ho, wo, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.reshape(b, c, TAPS, ho, wo) * mask.reshape(b, 1, TAPS, ho, wo)
    out = weight.reshape(weight.shape[0], c * TAPS) @ cols.reshape(b, c * TAPS, ho * wo)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1)
    return out.reshape(b, -1, ho, wo)


def reinterpret_for_output(offset: Tensor, mask: Tensor, ho: int | Tensor, wo: int | Tensor) -> tuple[Tensor, Tensor]:
    """GLIP's coarser-level reuse: the CUDA kernel reads a larger offset/mask buffer as if it
    had the output's (smaller) size, i.e. the first 18*Ho*Wo / 9*Ho*Wo values per image."""
    b = offset.shape[0]
    off = offset.reshape(b, -1)[:, : 2 * TAPS * ho * wo].reshape(b, 2 * TAPS, ho, wo)
    msk = mask.reshape(b, -1)[:, : TAPS * ho * wo].reshape(b, TAPS, ho, wo)
    return off, msk


class ModulatedDeformConv(nn.Module):
    """3x3 modulated deformable conv with bias; parameter names as in maskrcnn_benchmark."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, KERNEL, KERNEL))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def output_size(self, h: int | Tensor, w: int | Tensor) -> tuple[int | Tensor, int | Tensor]:
        k, p, s = KERNEL, self.padding, self.stride
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        """offset/mask must have the output's spatial size (see :func:`reinterpret_for_output`)."""
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride, self.padding)
