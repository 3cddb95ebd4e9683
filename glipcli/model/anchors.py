"""ATSS anchors (one per location) and GLIP's box coder with the +1 conventions (GLIP_SPEC 7)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
DW_CLAMP = math.log(1000.0 / 16)


def cell_anchor(stride: int, size: int) -> Tensor:
    """[c - (S-1)/2, ..., c + (S-1)/2] with c = (s-1)/2, as maskrcnn's generate_anchors gives."""
    c = (stride - 1) / 2.0
    h = (size - 1) / 2.0
    return torch.tensor([[c - h, c - h, c + h, c + h]], dtype=torch.float32)


class AnchorGenerator(nn.Module):
    """Buffers named ``cell_anchors.{i}`` as in official checkpoints."""

    def __init__(self, sizes: tuple[int, ...], strides: tuple[int, ...]) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.cell_anchors = nn.Module()
        for i, (stride, size) in enumerate(zip(strides, sizes)):
            self.cell_anchors.register_buffer(str(i), cell_anchor(stride, size))

    def level_anchors(self, level: int, h: int | Tensor, w: int | Tensor) -> Tensor:
        """(h*w, 4) anchors, row-major (y outer, x inner) like the flattened head outputs."""
        base = getattr(self.cell_anchors, str(level))
        stride = self.strides[level]
        dev = base.device
        ys = torch.arange(h, device=dev, dtype=torch.float32) * stride
        xs = torch.arange(w, device=dev, dtype=torch.float32) * stride
        sy = ys[:, None].expand(-1, xs.shape[0]).reshape(-1)
        sx = xs[None, :].expand(ys.shape[0], -1).reshape(-1)
        return torch.stack([sx, sy, sx, sy], dim=1) + base

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        return [self.level_anchors(i, f.shape[-2], f.shape[-1]) for i, f in enumerate(features)]


def decode_boxes(deltas: Tensor, anchors: Tensor) -> Tensor:
    """deltas (..., 4) (dx, dy, dw, dh) against anchors (..., 4) xyxy -> boxes (..., 4) xyxy."""
    anchors = anchors.to(deltas.dtype)
    widths = anchors[..., 2] - anchors[..., 0] + 1
    heights = anchors[..., 3] - anchors[..., 1] + 1
    ctr_x = (anchors[..., 2] + anchors[..., 0]) / 2
    ctr_y = (anchors[..., 3] + anchors[..., 1]) / 2
    wx, wy, ww, wh = BOX_WEIGHTS
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = (deltas[..., 2] / ww).clamp(max=DW_CLAMP)
    dh = (deltas[..., 3] / wh).clamp(max=DW_CLAMP)
    cx = dx * widths + ctr_x
    cy = dy * heights + ctr_y
    w = torch.exp(dw) * widths
    h = torch.exp(dh) * heights
    return torch.stack([cx - 0.5 * (w - 1), cy - 0.5 * (h - 1), cx + 0.5 * (w - 1), cy + 0.5 * (h - 1)], dim=-1)


def encode_boxes(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Inverse of :func:`decode_boxes` (training targets)."""
    ex_w = anchors[..., 2] - anchors[..., 0] + 1
    ex_h = anchors[..., 3] - anchors[..., 1] + 1
    ex_cx = (anchors[..., 2] + anchors[..., 0]) / 2
    ex_cy = (anchors[..., 3] + anchors[..., 1]) / 2
    gt_w = boxes[..., 2] - boxes[..., 0] + 1
    gt_h = boxes[..., 3] - boxes[..., 1] + 1
    gt_cx = (boxes[..., 2] + boxes[..., 0]) / 2
    gt_cy = (boxes[..., 3] + boxes[..., 1]) / 2
    wx, wy, ww, wh = BOX_WEIGHTS
    return torch.stack(
        [
            wx * (gt_cx - ex_cx) / ex_w,
            wy * (gt_cy - ex_cy) / ex_h,
            ww * torch.log(gt_w / ex_w),
            wh * torch.log(gt_h / ex_h),
        ],
        dim=-1,
    )
