"""The region namer: a small CNN that re-reads each detected box, cropped at a fixed size, against
the prompt's tokens.

glip-nano localises well but names small shapes poorly at the scale detection sees them (a shape
of 16 px covers 2x2 cells of P3); the same data teaches shapes quickly to a CNN that sees each
object resized to a fixed size (docs/glip-nano.md). The namer is that CNN, text-conditioned like
GLIP's head: a box's crop embedding is dot-multiplied with the projected token features of the
prompt, so it scores any phrase, and each phrase's score is aggregated from its words as the
head's are (glipcli.postprocess). The Detector blends it with GLIP's score (glipcli.api).
It is an add-on of a bundle, trained on its own (glipcli.train.namer); official models have none.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from glipcli.config import NamerConfig

CROP_MEAN = 0.45
CROP_STD = 0.25


def _conv(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


class AttentionPool(nn.Module):
    """(N, C, H, W) -> (N, C): a mean over positions weighted by a softmax of a 1x1 conv's score,
    so the namer can read the object and leave its surroundings (a large black cross cut out with
    part of a blue circle read "black" at 0.56 under the plain mean, 0.84 with the blue painted out)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, 1, 1)

    def forward(self, features: Tensor) -> Tensor:
        weights = torch.softmax(self.score(features).flatten(2), dim=-1)
        return (features.flatten(2) * weights).sum(-1)


class Pool(nn.Module):
    """The last stage's map as one vector (``NamerConfig.pool``): its mean, the attention-weighted
    mean, or both concatenated. glip-nano's namer uses the mean: the three measured alike
    (docs/glip-nano.md)."""

    def __init__(self, channels: int, kind: str) -> None:
        super().__init__()
        self.mean = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if kind in ("mean", "both") else None
        self.attention = AttentionPool(channels) if kind in ("attention", "both") else None

    def forward(self, features: Tensor) -> Tensor:
        pooled = [pool(features) for pool in (self.mean, self.attention) if pool is not None]
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)


class RegionNamer(nn.Module):
    """(N, 3, S, S) crops in [0, 1], RGB, and (T, D) text features -> (N, T) token logits."""

    def __init__(self, cfg: NamerConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for stage, channels in enumerate(cfg.channels):
            if stage:
                layers.append(nn.MaxPool2d(2))
            layers += [*_conv(width, channels), *_conv(channels, channels)]
            width = channels
        self.body = nn.Sequential(*layers, Pool(width, cfg.pool))
        self.image_proj = nn.Linear(width * (2 if cfg.pool == "both" else 1), cfg.embed)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.embed)
        # start at a low prior, as GLIP's head does (prior_prob 0.01): most tokens are negatives
        self.bias = nn.Parameter(torch.tensor(-math.log(99.0)))
        self.scale = 1 / math.sqrt(cfg.embed)

    def forward(self, crops: Tensor, text: Tensor) -> Tensor:
        image = self.image_proj(self.body((crops - CROP_MEAN) / CROP_STD))
        return image @ self.text_proj(text).T * self.scale + self.bias
