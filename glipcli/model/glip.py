"""GLIP: Swin+FPN image encoder, BERT text encoder and the VL-DyHead, split into the three
stages that the exported graphs run (text once per prompt chunk, backbone once per image,
fused head once per image x chunk)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glipcli.config import GLIPConfig
from glipcli.model.anchors import AnchorGenerator, decode_boxes
from glipcli.model.dyhead import HeadOutputs, VLDyHead
from glipcli.model.fpn import FPN
from glipcli.model.language import LanguageBackbone
from glipcli.model.swin import SwinTransformer


class Backbone(nn.Module):
    def __init__(self, cfg: GLIPConfig) -> None:
        super().__init__()
        self.body = SwinTransformer(cfg.swin)
        self.fpn = FPN(cfg.swin.out_channels[1:], cfg.head.fpn_channels)

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.fpn(self.body(images)[1:])


class RPN(nn.Module):
    def __init__(self, cfg: GLIPConfig) -> None:
        super().__init__()
        self.head = VLDyHead(cfg.head, cfg.language)
        self.anchor_generator = AnchorGenerator(cfg.anchors.sizes, cfg.anchors.strides)
        if cfg.head.prompt_tuning:
            # GLIP's language_prompt_v2: a position-indexed offset on the BERT output features.
            self.tunable_linear = nn.Linear(cfg.language.dim, 1000, bias=False)
            nn.init.zeros_(self.tunable_linear.weight)

    def forward(self, features: list[Tensor], text: Tensor, mask: Tensor) -> HeadOutputs:
        if hasattr(self, "tunable_linear"):
            text = text + self.tunable_linear.weight[: text.shape[1]].unsqueeze(0)
        return self.head(features, text, mask)


class GLIP(nn.Module):
    def __init__(self, cfg: GLIPConfig) -> None:
        super().__init__()
        if cfg.language.n_layers != 1:
            raise ValueError("only LANGUAGE_BACKBONE.N_LAYERS = 1 is supported (all released GLIP models)")
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.language_backbone = LanguageBackbone(cfg.language)
        self.rpn = RPN(cfg)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) ids and 0/1 mask -> (B, T, D) last-layer BERT features."""
        return self.language_backbone(input_ids, attention_mask)[0]

    def encode_image(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised, padded to a multiple of 32 -> [P3, P4, P5, P6, P7]."""
        return self.backbone(images)

    def head(self, features: list[Tensor], text: Tensor, mask: Tensor) -> HeadOutputs:
        return self.rpn(features, text, mask)

    def decode(self, out: HeadOutputs) -> tuple[Tensor, Tensor, Tensor]:
        """Per-anchor outputs over all levels (P3 first, row-major):
        boxes (B, N, 4) xyxy in padded-input pixels, centerness logits (B, N), token logits (B, N, T)."""
        boxes, ctr = [], []
        for level, (reg, c) in enumerate(zip(out.bbox_regression, out.centerness)):
            b, _, h, w = reg.shape
            anchors = self.rpn.anchor_generator.level_anchors(level, h, w)
            deltas = reg.permute(0, 2, 3, 1).reshape(b, -1, 4)
            boxes.append(decode_boxes(deltas, anchors.unsqueeze(0)))
            ctr.append(c.reshape(b, -1))
        return torch.cat(boxes, 1), torch.cat(ctr, 1), torch.cat(out.dot_product_logits, 1)

    def forward(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        text = self.encode_text(input_ids, attention_mask)
        return self.decode(self.head(self.encode_image(images), text, attention_mask))


def build_model(cfg: GLIPConfig) -> GLIP:
    return GLIP(cfg).eval()
