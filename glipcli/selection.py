"""Which of GLIP's detections a person keeps: one label per object, no fragments, per-class thresholds.

GLIP scores every prompt label at every anchor and runs NMS per label, so an object that shares
a word with several phrases ("red star", "red heart") is boxed once per phrase, and partial boxes
of an object that overlap its main box by less than NMS's IoU survive beside it. The default
output keeps, greedily by score, a box unless a kept box

- overlaps it with IoU >= ``ONE_LABEL_IOU`` (any label: the same object named twice), or
- has its label and holds at least ``FRAGMENT_INSIDE`` of its area (a fragment of that object).

A small object of another label lying on a large one (a black cross drawn on a blue circle) is
kept: containment suppresses only within a label. Each kept box is then held to its label's
threshold. A box is suppressed only by higher-scoring ones, so the result over boxes scoring at
least ``t`` does not depend on the boxes below ``t``: selecting from output thresholded at the
lowest class threshold (what ``glip label`` journals) equals selecting from GLIP's full output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from glipcli.errors import ConfigError
from glipcli.prompt import name_key

ONE_LABEL_IOU = 0.5
"""Boxes of any labels overlapping this much are one object; the best-scoring label is kept.

NMS's usual 0.5. Measured with the two-stage glip-nano, best F1 of right boxes over thresholds:
0.7577 at 0.3 and 0.7571 for 0.4-0.7 on 150 generator scenes (seed 401), 0.8896 for every value on
150 drawn scenes (seed 701): the same object's boxes under two labels nearly coincide, so the value
hardly matters; what the one-label output gets wrong is the best label, not the grouping.
"""

FRAGMENT_INSIDE = 0.5
"""A box with at least this share of its area inside a better-scoring box of its label is a fragment.

Measured with glip-nano (docs/labels.md), best F1 of right boxes over thresholds: on 150 generator
scenes (seed 401) 0.7112 for 0.3-0.5, 0.7096 for 0.6-0.9, 0.7107 without the rule; on 150 drawn
scenes (seed 701) 0.8314 for every value (same-label fragments are rare there). The largest of the
best values. Containment across labels scored 0.7136 / 0.8339 but would drop a small object lying
on a large one of another label, so it is not used.
"""


@dataclass(frozen=True)
class Thresholds:
    """A score threshold per label id (1-based): ``default`` unless ``per_label`` names it."""

    default: float
    per_label: Mapping[int, float] = field(default_factory=dict)

    @property
    def floor(self) -> float:
        """The lowest threshold of any label: output scoring below it can never be kept."""
        return min([self.default, *self.per_label.values()])

    def of(self, label_ids: np.ndarray) -> np.ndarray:
        """Each detection's threshold, from its 1-based label id."""
        values = np.full(len(label_ids), self.default, dtype=np.float64)
        for label_id, value in self.per_label.items():
            values[label_ids == label_id] = value
        return values


def check_threshold(value: object, what: str = "threshold") -> float:
    """A number in [0, 1] (bools, NaN and strings refused), as float."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ConfigError(f"{what} must be between 0 and 1, got {value!r}")
    return float(value)


def per_label_thresholds(names: Sequence[str], by_name: Mapping[str, float] | None) -> dict[int, float]:
    """Class-name thresholds as label ids (1-based), names matched case and spacing aside.

    A name the prompt does not hold is an error (a typo would otherwise apply nothing); a name
    the prompt holds twice (two descriptions) applies to both.
    """
    if not by_name:
        return {}
    ids: dict[str, list[int]] = {}
    for label_id, name in enumerate(names, start=1):
        ids.setdefault(name_key(name), []).append(label_id)
    result: dict[int, float] = {}
    for name, value in by_name.items():
        matches = ids.get(name_key(str(name)))
        if not matches:
            known = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
            raise ConfigError(f"class threshold for {name!r}: the prompt has no such class (classes: {known})")
        for label_id in matches:
            result[label_id] = check_threshold(value, f"class threshold for {name!r}")
    return result


def one_label_per_object(
    xyxy: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    iou: float = ONE_LABEL_IOU,
    inside: float | None = FRAGMENT_INSIDE,
) -> np.ndarray:
    """Indices of the boxes kept (see the module docstring), best score first; ``inside=None`` keeps fragments."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)[order]
    labels = np.asarray(labels)[order]
    overlap = _iou_matrix(boxes) >= iou
    if inside is not None:
        overlap |= (_share_inside(boxes) >= inside) & (labels[:, None] == labels[None, :])
    kept: list[int] = []
    for i in range(len(boxes)):
        if not overlap[i, kept].any():
            kept.append(i)
    return order[kept]


def _iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """``[i, j]``: IoU of float64 boxes i and j, float32, 0 where the union is empty: supervision's
    ``box_iou_batch`` (no +1 pixel convention) without importing supervision."""
    low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    intersection = np.prod(np.clip(high - low, 0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area[:, None] + area[None, :] - intersection
    out = np.zeros(intersection.shape, np.float32)
    np.divide(intersection, union, out=out, where=union > 0, casting="unsafe")
    return out


def _share_inside(boxes: np.ndarray) -> np.ndarray:
    """``[i, j]``: the share of box i's area that lies inside box j."""
    low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    intersection = np.prod(np.clip(high - low, 0, None), axis=2)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    return intersection / np.maximum(area, 1e-9)[:, None]


D = TypeVar("D")


def select(detections: D, thresholds: Thresholds, *, all_labels: bool = False) -> D:
    """The detections a person keeps; ``all_labels`` skips the one-label selection and keeps the order.

    ``detections`` (a :class:`glipcli.detections.Found` or an ``sv.Detections``) carries 1-based
    ``label_id`` in its data (as the Detector's output does); the one-label output is ordered best
    score first.
    """
    label_ids = np.asarray(detections.data["label_id"])
    order = (
        np.arange(len(detections))
        if all_labels
        else one_label_per_object(detections.xyxy, detections.confidence, label_ids)
    )
    return detections[order[detections.confidence[order] >= thresholds.of(label_ids[order])]]


def describe(all_labels: bool) -> str:
    """How the output's boxes were chosen from GLIP's, in words (for output files)."""
    if all_labels:
        return "all labels: GLIP's output, every label's boxes"
    return (
        f"one label per object: boxes of any label with IoU >= {ONE_LABEL_IOU} with a better box, and "
        f"boxes with >= {FRAGMENT_INSIDE} of their area inside a better box of their label, are dropped"
    )
