"""FPN on Swin stages 3-5 with the P6/P7 top blocks of RetinaNet (GLIP_SPEC section 5.2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LastLevelP6P7(nn.Module):
    """P6 from P5 (the FPN output, not C5); P7 from ReLU(P6)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, p5: Tensor) -> list[Tensor]:
        p6 = self.p6(p5)
        return [p6, self.p7(F.relu(p6))]


class FPN(nn.Module):
    """Official names: fpn_inner2..4 / fpn_layer2..4 take stages 3..5 (stage 2 has no branch)."""

    def __init__(self, in_channels: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.num_inputs = len(in_channels)
        for i, cin in enumerate(in_channels, start=2):
            self.add_module(f"fpn_inner{i}", nn.Conv2d(cin, channels, 1))
            self.add_module(f"fpn_layer{i}", nn.Conv2d(channels, channels, 3, padding=1))
        self.top_blocks = LastLevelP6P7(channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """features: C3, C4, C5 -> [P3, P4, P5, P6, P7]."""
        last = len(features) + 1
        inner = getattr(self, f"fpn_inner{last}")(features[-1])
        results = [getattr(self, f"fpn_layer{last}")(inner)]
        for i in range(len(features) - 2, -1, -1):
            lateral = getattr(self, f"fpn_inner{i + 2}")(features[i])
            top_down = F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            inner = lateral + top_down
            results.insert(0, getattr(self, f"fpn_layer{i + 2}")(inner))
        return results + self.top_blocks(results[-1])
