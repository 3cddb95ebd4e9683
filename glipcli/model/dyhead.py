"""The vision-language DyHead: fusion tower, DyConv blocks and the output heads
(GLIP_SPEC sections 6.1 and 6.4-6.6)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glipcli.config import HeadConfig, LanguageConfig
from glipcli.model.bert_layer import BertEncoderLayer
from glipcli.model.deform import ModulatedDeformConv, reinterpret_for_output
from glipcli.model.fusion import VLFuse

CLAMP = 50000.0


def h_sigmoid(x: Tensor) -> Tensor:
    return F.relu6(x + 3.0) / 6.0


class HSigmoid(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return h_sigmoid(x)


class DyReLU(nn.Module):
    """Dynamic ReLU (K2 with bias): max(a1*x + b1, a2*x + b2) with per-channel coefficients."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channels = channels
        squeeze = channels // reduction
        self.fc = nn.Sequential(nn.Linear(channels, squeeze), nn.ReLU(), nn.Linear(squeeze, channels * 4), HSigmoid())

    def forward(self, x: Tensor) -> Tensor:
        coeffs = self.fc(x.mean(dim=(2, 3)))[:, :, None, None]
        a1, b1, a2, b2 = torch.split(coeffs, self.channels, dim=1)
        a1 = (a1 - 0.5) * 2.0 + 1.0
        a2 = (a2 - 0.5) * 2.0
        return torch.maximum(x * a1 + (b1 - 0.5), x * a2 + (b2 - 0.5))


class Conv3x3Norm(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, deformable: bool, gn_groups: int | None) -> None:
        super().__init__()
        self.deformable = deformable
        if deformable:
            self.conv: nn.Module = ModulatedDeformConv(cin, cout, stride=stride)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn = nn.GroupNorm(gn_groups, cout) if gn_groups else None

    def forward(self, x: Tensor, offset: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        x = self.conv(x, offset, mask) if self.deformable else self.conv(x)
        return self.bn(x) if self.bn is not None else x


class DyConv(nn.Module):
    """Scale-aware + spatial-aware DyHead block over the five pyramid levels."""

    def __init__(self, cin: int, cout: int, cfg: HeadConfig, first: bool) -> None:
        super().__init__()
        # Official quirk: layer 0 drops DyReLU/DyFuse/DCN when FPN and head widths differ.
        same = cin == cout
        use_deform = cfg.use_deform and (same or not first)
        use_dyfuse = cfg.use_dyfuse and (same or not first)
        use_dyrelu = cfg.use_dyrelu and (same or not first)
        gn = cfg.gn_groups if cfg.use_gn else None
        self.DyConv = nn.ModuleList([Conv3x3Norm(cin, cout, s, use_deform, gn) for s in (1, 1, 2)])
        self.AttnConv = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, 1, 1), nn.ReLU()) if use_dyfuse else None
        self.relu: nn.Module = DyReLU(cin) if use_dyrelu else nn.ReLU()
        self.offset = nn.Conv2d(cin, 27, 3, padding=1) if use_deform else None
        for conv in self.DyConv:
            inner = conv.conv
            nn.init.normal_(inner.weight, 0, 0.01)
            nn.init.zeros_(inner.bias)
        if self.AttnConv is not None:
            nn.init.normal_(self.AttnConv[1].weight, 0, 0.01)
            nn.init.zeros_(self.AttnConv[1].bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        out = []
        n = len(features)
        for level, feature in enumerate(features):
            offset = mask = None
            if self.offset is not None:
                om = self.offset(feature)
                offset, mask = om[:, :18], om[:, 18:].sigmoid()
            terms = [self.DyConv[1](feature, offset, mask)]
            if level > 0:
                terms.append(self.DyConv[2](features[level - 1], offset, mask))
            if level < n - 1:
                coarser = features[level + 1]
                c_off, c_mask = offset, mask
                if offset is not None:
                    c_off, c_mask = reinterpret_for_output(offset, mask, coarser.shape[-2], coarser.shape[-1])
                up = self.DyConv[0](coarser, c_off, c_mask)
                terms.append(F.interpolate(up, size=feature.shape[-2:], mode="bilinear", align_corners=True))
            if self.AttnConv is not None:
                terms = [t * h_sigmoid(self.AttnConv(t)) for t in terms]
            out.append(torch.stack(terms).mean(dim=0))
        return [self.relu(x) for x in out]


class Scale(nn.Module):
    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([value]))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


@dataclass
class HeadOutputs:
    """Raw per-level outputs, as the official head returns them."""

    bbox_regression: list[Tensor]  # (B, 4, H, W) deltas, already multiplied by the level scale
    centerness: list[Tensor]  # (B, 1, H, W) logits
    dot_product_logits: list[Tensor]  # (B, H*W, T)
    cls_logits: list[Tensor]  # (B, num_classes, H, W); only its width matters
    fused_visual: list[Tensor]  # tower outputs, what the prediction convs see


class VLDyHead(nn.Module):
    def __init__(self, cfg: HeadConfig, lang: LanguageConfig) -> None:
        super().__init__()
        self.cfg = cfg
        tower: list[nn.Module] = []
        for i in range(cfg.num_convs):
            if cfg.early_fuse:
                tower.append(VLFuse(cfg, lang.dim))
                if i < cfg.num_convs - 1 or cfg.fused_dot_product:
                    tower.append(BertEncoderLayer(lang.bert, cfg.clamp_bert_attention))
                else:
                    tower.append(nn.Identity())
            cin = cfg.fpn_channels if i == 0 else cfg.channels
            tower.append(DyConv(cin, cfg.channels, cfg, first=i == 0))
        self.dyhead_tower = nn.ModuleList(tower)
        ch = cfg.channels
        self.cls_logits = nn.Conv2d(ch, cfg.num_classes, 1)
        self.bbox_pred = nn.Conv2d(ch, 4, 1)
        self.centerness = nn.Conv2d(ch, 1, 1)
        bias_value = -math.log((1 - cfg.prior_prob) / cfg.prior_prob)
        for conv in (self.cls_logits, self.bbox_pred, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_logits.bias, bias_value)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(5))
        self.dot_product_projection_text = nn.Linear(lang.dim, ch)
        self.log_scale = nn.Parameter(torch.tensor([cfg.log_scale]))
        self.bias_lang = nn.Parameter(torch.zeros(lang.dim))
        self.bias0 = nn.Parameter(torch.tensor([bias_value]))

    def forward(self, features: list[Tensor], text: Tensor, mask: Tensor) -> HeadOutputs:
        """features: P3..P7; text: (B, T, D) BERT features; mask: (B, T) 0/1."""
        embedded = text * mask.unsqueeze(-1).to(text.dtype)
        hidden = text
        visual = list(features)
        for module in self.dyhead_tower:
            if isinstance(module, VLFuse):
                visual, hidden = module(visual, hidden, mask)
            elif isinstance(module, BertEncoderLayer):
                hidden = module(hidden, mask)
            elif isinstance(module, DyConv):
                visual = module(visual)
        tokens = hidden if self.cfg.fused_dot_product else embedded
        tokens = F.normalize(tokens, p=2, dim=-1)
        proj_tokens = self.dot_product_projection_text(tokens / 2.0)  # (B, T, C)
        token_bias = tokens @ self.bias_lang + self.bias0  # (B, T)
        temperature = self.log_scale.exp()
        out = HeadOutputs([], [], [], [], visual)
        for level, x in enumerate(visual):
            out.cls_logits.append(self.cls_logits(x))
            out.bbox_regression.append(self.scales[level](self.bbox_pred(x)))
            out.centerness.append(self.centerness(x))
            queries = x.flatten(2).transpose(1, 2)  # (B, HW, C), not normalised
            logits = (queries @ proj_tokens.transpose(-1, -2)) / temperature + token_bias[:, None, :]
            if self.cfg.clamp_dot_product:
                logits = logits.clamp(-CLAMP, CLAMP)
            out.dot_product_logits.append(logits)
        return out
