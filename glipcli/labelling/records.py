"""Journal records: what either engine makes of a block of images, and how records are read back.

A record is one image's line in the journal: GLIP's output for it (every label's boxes above the
run's lowest threshold), or why it was skipped. Both engines make records through
:func:`label_block`, so a run labelled partly locally and partly on Ray gives the same output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from glipcli.api import Detector, PreparedPrompt
from glipcli.detections import Found
from glipcli.io.images import decode_or_reason
from glipcli.io.journal import Journal
from glipcli.preprocess import PreparedImage
from glipcli.progress import Skipped
from glipcli.selection import Thresholds, select

Block = list[tuple[int, str, Path]]  # (image id, file relative to the folder, path) of consecutive images
Labeller = Callable[[list[Block], set[str], Journal], Iterator[bool]]
"""An engine: journals the images of the blocks that are not done, yielding per image whether it was skipped."""
Records = Callable[[], Iterator[dict[str, Any]]]
"""A fresh pass over a run's records, in id order: writers read them more than once."""


def prepare_or_reason(detector: Detector, path: Path) -> PreparedImage | str:
    """The model's input for the image, or why there is none. Runs in the prefetch threads, beside
    the model: with the faster NMS and batched fsync it took glip label on glip-nano from 0.83 to
    1.00 of the model-only images/s (``python -m bench --quick``, docs/speed.md)."""
    rgb = decode_or_reason(path)
    return rgb if isinstance(rgb, str) else detector.prepare(rgb)


def label_block(
    detector: Detector,
    prepared: PreparedPrompt,
    items: list[tuple[int, str, np.ndarray | PreparedImage | str]],
    threshold: float,
    limit: int,
) -> Iterator[dict[str, Any]]:
    """Journal records of one block of images, in order; the readable ones share one batch.

    Records hold GLIP's output (every label's boxes) scoring at least ``threshold``; both engines
    label through here, so their records agree.
    """
    images = [image for _, _, image in items if not isinstance(image, str)]
    results = detector.detect_arrays(
        images, prepared, threshold=threshold, max_detections=limit, all_labels=True, batch_size=max(len(images), 1)
    )
    for image_id, rel, image in items:
        if isinstance(image, str):
            yield {"file_name": rel, "id": image_id, "skipped": image}
            continue
        _, det = next(results)
        height, width = image.original_hw if isinstance(image, PreparedImage) else image.shape[:2]
        yield {
            "file_name": rel,
            "id": image_id,
            "width": int(width),
            "height": int(height),
            "boxes": det.xyxy.tolist(),
            "scores": det.confidence.tolist(),
            "labels": det.data["label_id"].tolist(),
        }


def select_record(record: dict[str, Any], thresholds: Thresholds, all_labels: bool) -> dict[str, Any]:
    """The record as it is written (see :func:`selection.select`); values exactly as journaled."""
    if "skipped" in record:
        return record
    detections = Found(
        xyxy=np.asarray(record["boxes"], dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray(record["scores"], dtype=np.float32),
        class_id=np.asarray(record["labels"], dtype=np.int64) - 1,
        data={"index": np.arange(len(record["scores"])), "label_id": np.asarray(record["labels"], dtype=np.int64)},
    )
    keep = select(detections, thresholds, all_labels=all_labels).data["index"].tolist()
    return {**record, **{key: [record[key][i] for i in keep] for key in ("boxes", "scores", "labels")}}


def labelled(records: Records) -> Iterator[dict[str, Any]]:
    """The records of images that were labelled, skipped ones left out."""
    return (record for record in records() if "skipped" not in record)


def totals(records: Iterable[dict[str, Any]]) -> tuple[int, int, list[Skipped]]:
    """(images labelled, boxes, files skipped while decoding) over all records."""
    count = boxes = 0
    skipped = []
    for record in records:
        if "skipped" in record:
            skipped.append(Skipped(record["file_name"], record["skipped"]))
        else:
            count += 1
            boxes += len(record["scores"])
    return count, boxes, skipped
