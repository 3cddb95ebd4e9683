"""Test scales: one input size, or GLIP's multi-scale test (GLIP_SPEC 3.3).

A size is ``SHORT[:MAX_LONG]`` (glipcli.preprocess.with_size). Several, comma-separated, run the
model once per size; ``@LOW-HIGH`` after a size keeps only that pass's boxes whose square root of
area (in that pass's resized pixels, GLIP's +1 widths) lies strictly between LOW and HIGH, as the
official ``TEST.RANGES`` do. The passes' candidates are merged in original pixels by one NMS per
label at the model's NMS threshold (the official ``TEST.TH``, 0.6 for every GLIP config).

Why: a model reads small objects better when they are bigger on its input, and large ones worse
(glip-nano names shapes under 24 px right for 0.52 at short side 384 and 0.73 at 768, but finds
fewer large objects there), so a larger pass that keeps only small boxes, and a smaller one that
keeps only large boxes, add what the model's own size misses (SNIP's valid ranges, which the
official multi-scale test implements). glip-nano's choice: docs/labels.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from glipcli.config import InputConfig
from glipcli.errors import ConfigError
from glipcli.preprocess import size_text, with_size

MAX_SCALES = 4
"""Passes one size may ask for: glip-nano's best measured test used three (docs/labels.md), and a 960 pass
for the smallest boxes added only 0.007 F1 to two passes at 6x a pass's cost; more is likelier a typo than a plan."""


@dataclass(frozen=True)
class ScalePass:
    """One pass: its input size and the box sizes it keeps (``low`` < sqrt(area) < ``high``)."""

    input: InputConfig
    low: float = 0.0
    high: float = math.inf

    @property
    def keeps_all(self) -> bool:
        return self.low <= 0 and math.isinf(self.high)

    def keep(self, boxes: np.ndarray) -> np.ndarray:
        """Mask of ``boxes`` (xyxy, this pass's resized pixels) inside the range, as ``remove_boxes``."""
        if self.keeps_all:
            return np.ones(len(boxes), bool)
        area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
        return (area > self.low**2) & (area < self.high**2)

    def text(self) -> str:
        if self.keeps_all:
            return size_text(self.input)
        high = "" if math.isinf(self.high) else f"{self.high:g}"
        return f"{size_text(self.input)}@{self.low:g}-{high}"


def parse_scales(size: str | int | Sequence[int] | None, base: InputConfig) -> tuple[ScalePass, ...]:
    """The passes ``size`` asks for (``None``: the model's one size); a bad value is a ConfigError."""
    if size is None:
        return (ScalePass(base),)
    if not isinstance(size, str):
        return (ScalePass(with_size(base, size)),)
    parts = [part.strip() for part in size.split(",")]
    if not 1 <= len(parts) <= MAX_SCALES or not all(parts):
        raise ConfigError(f"size {size.strip()!r}: expected 1-{MAX_SCALES} comma-separated SHORT[:MAX_LONG][@LOW-HIGH]")
    scales = tuple(_scale(part, base) for part in parts)
    if all(not scale.keeps_all for scale in scales):
        raise ConfigError(f"size {size.strip()!r}: at least one size must keep every box (no @LOW-HIGH)")
    return scales


def scales_text(scales: Sequence[ScalePass]) -> str:
    """The passes as ``--size`` takes them and outputs record them (``"384:768"`` for one)."""
    return ",".join(scale.text() for scale in scales)


def _scale(part: str, base: InputConfig) -> ScalePass:
    size, _, keep = part.partition("@")
    scale = ScalePass(with_size(base, size))
    if not keep:
        return scale
    low, dash, high = keep.partition("-")
    if not dash or not low.strip().isdigit() or not (high.strip().isdigit() or not high.strip()):
        raise ConfigError(f"size {part!r}: the range after @ must be LOW-HIGH in whole pixels, e.g. 768@0-96")
    low_value, high_value = int(low), (int(high) if high.strip() else math.inf)
    if not low_value < high_value:
        raise ConfigError(f"size {part!r}: the range's LOW must be below its HIGH")
    return ScalePass(scale.input, float(low_value), float(high_value))
