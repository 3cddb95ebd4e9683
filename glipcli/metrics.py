"""COCO metrics with pycocotools: mAP@[.5:.95], mAP@0.5, mAP@0.75 and per-class AP.

Torch-free; used by ``glip eval`` and by training to follow progress.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glipcli.errors import DataError


@dataclass
class Metrics:
    map: float  # AP@[.5:.95]
    map50: float
    map75: float
    per_class: dict[str, float] = field(default_factory=dict)  # AP@[.5:.95] per category name
    per_class50: dict[str, float] = field(default_factory=dict)  # AP@0.5 per category name
    images: int = 0
    detections: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mAP": self.map,
            "mAP50": self.map50,
            "mAP75": self.map75,
            "per_class": {
                k: {"AP": v, "AP50": self.per_class50.get(k, float("nan"))} for k, v in self.per_class.items()
            },
            "images": self.images,
            "detections": self.detections,
        }


def coco_metrics(ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> Metrics:
    """``results``: COCO result entries (image_id, category_id, bbox [x, y, w, h], score)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = copy.deepcopy(ground_truth)
    gt.dataset.setdefault("info", {})
    for annotation in gt.dataset.get("annotations", []):
        if "area" not in annotation and "bbox" in annotation:  # optional in many exporters' files
            annotation["area"] = float(annotation["bbox"][2]) * float(annotation["bbox"][3])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    names = {c["id"]: c["name"] for c in ground_truth.get("categories", [])}
    if not names:
        raise DataError("the ground truth has no categories")
    if not results:
        return Metrics(
            0.0,
            0.0,
            0.0,
            dict.fromkeys(names.values(), 0.0),
            dict.fromkeys(names.values(), 0.0),
            len(gt.getImgIds()),
            0,
        )
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # (iou, recall, class, area, maxdet)
    per_class, per_class50 = {}, {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        has_gt = len(gt.getAnnIds(catIds=[cat_id])) > 0
        if not has_gt:
            continue
        per_class[names[cat_id]] = float(np.mean(p[p > -1])) if (p > -1).any() else 0.0
        p50 = precision[0, :, k, 0, -1]
        per_class50[names[cat_id]] = float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else 0.0
    stats = [max(0.0, float(s)) for s in ev.stats[:3]]
    return Metrics(stats[0], stats[1], stats[2], per_class, per_class50, len(gt.getImgIds()), len(results))
