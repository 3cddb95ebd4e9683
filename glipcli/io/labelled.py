"""One labelled image as every hand-off writer takes it, from a label journal or a COCO file.

All writers (COCO, YOLO, Pascal VOC, Label Studio, CVAT) read this one shape, so a format
converted later from the COCO output holds what ``glip label`` would have written directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from glipcli.io.coco import PIXEL_DECIMALS, SCORE_DECIMALS, coco_boxes


@dataclass(frozen=True)
class LabelledImage:
    file_name: str  # relative to the image folder, "/" separators
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) GLIP's inclusive [x1, y1, x2, y2] in pixels (x2 is the last pixel covered)
    scores: np.ndarray | None  # (N,) or None for ground truth without scores
    class_ids: np.ndarray  # (N,) 0-based indices into the class names


def from_record(record: dict[str, Any]) -> LabelledImage:
    """A ``glip label`` journal record (boxes xyxy, label ids 1..), values exactly as journaled."""
    return LabelledImage(
        file_name=record["file_name"],
        width=int(record["width"]),
        height=int(record["height"]),
        boxes=np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4),
        scores=np.asarray(record["scores"], dtype=np.float64).reshape(-1),
        class_ids=np.asarray(record["labels"], dtype=np.int64).reshape(-1) - 1,
    )


def from_coco(data: dict[str, Any]) -> Iterator[LabelledImage]:
    """The images of a validated COCO document (glipcli.io.coco.load_coco) in file order.

    bbox ``[x, y, w, h]`` counts pixels as GLIP does (w = x2 - x1 + 1), so x2 = x + w - 1.
    Categories become class indices in the order the file lists them. Scores are None when no
    annotation carries one (a ground truth).
    """
    index = {category["id"]: i for i, category in enumerate(data["categories"])}
    by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in data["images"]}
    for annotation in data["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    scored = any("score" in annotation for annotation in data["annotations"])
    for image in data["images"]:
        annotations = by_image[image["id"]]
        xywh = np.asarray([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] - 1], axis=1)
        yield LabelledImage(
            file_name=image["file_name"],
            width=int(image["width"]),
            height=int(image["height"]),
            boxes=boxes,
            scores=np.asarray([a.get("score", 1.0) for a in annotations], dtype=np.float64) if scored else None,
            class_ids=np.asarray([index[a["category_id"]] for a in annotations], dtype=np.int64),
        )


def rounded_xywh(image: LabelledImage) -> list[tuple[float, float, float, float]]:
    """Each box as the COCO output writes it, ``[x, y, w, h]`` with w = x2 - x1 + 1, pixels to 2 decimals.

    Every format derives its numbers from these, so reading any of them back gives the COCO values.
    """
    return [(px(x), px(y), px(w), px(h)) for x, y, w, h in coco_boxes(image.boxes)]


def px(value: float) -> float:
    """Pixel values as the COCO output rounds them."""
    return round(float(value), PIXEL_DECIMALS)


def score(value: float) -> float:
    """Scores as the COCO output rounds them, so every format carries the same numbers."""
    return round(float(value), SCORE_DECIMALS)
