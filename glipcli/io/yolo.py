"""YOLO detection labels: one ``.txt`` per image, mirroring the image tree, plus class lists.

Point ``out_dir`` at ``<dataset>/labels`` with the images under ``<dataset>/images`` and the
layout is the one Ultralytics expects; sub-folders are kept, so ``a/x.jpg`` and ``b/x.jpg``
do not collide as they do in writers that keep basenames only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import yaml
from supervision.dataset.formats.yolo import object_to_yolo

from glipcli.errors import DataError
from glipcli.io.coco import write_text_atomic


def yolo_lines(width: int, height: int, boxes_xyxy: np.ndarray, class_ids: np.ndarray) -> list[str]:
    """``"cls cx cy w h"`` lines normalised to [0, 1], 5 decimals (supervision's format).

    GLIP's boxes are inclusive (x2 is the last pixel covered), so a box spans x1 .. x2 + 1 and
    its width is (x2 - x1 + 1) / W, as in GLIP's COCO conversion. Boxes are clipped to the image
    after that: coordinates outside [0, 1] make YOLO loaders drop the label.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    class_ids = np.asarray(class_ids).reshape(-1)
    if len(boxes) != len(class_ids):
        raise ValueError(f"{len(boxes)} boxes, {len(class_ids)} class ids")
    exclusive = boxes + [0, 0, 1, 1]
    clipped = np.clip(exclusive, 0, [width, height, width, height])
    return [object_to_yolo(box, int(c), (height, width)) for box, c in zip(clipped, class_ids, strict=True)]


def label_path(out_dir: Path, image_path: str) -> Path:
    """``out_dir / image_path`` with a ``.txt`` suffix; refuses paths that would leave ``out_dir``."""
    rel = PurePosixPath(image_path)
    if rel.is_absolute() or ".." in rel.parts or not rel.name:
        raise DataError(f"{image_path}: image path must be relative to the image folder, without '..'")
    return Path(out_dir, *rel.with_suffix(".txt").parts)


def write_yolo(
    out_dir: Path,
    items: Iterable[tuple[str, int, int, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
) -> None:
    """Write ``data.yaml``, ``classes.txt`` and one label file per item, each atomically.

    ``items`` are (relative image path with "/" separators, width, height, boxes_xyxy in pixels,
    0-based class ids); they are consumed as they come, so a crash keeps what was written.
    An image without boxes gets an empty file (a background image, for YOLO).
    """
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "classes.txt", "".join(f"{name}\n" for name in class_names))
    data = {"nc": len(class_names), "names": list(class_names)}
    write_text_atomic(out_dir / "data.yaml", yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    written: dict[Path, str] = {out_dir / "classes.txt": "the class list"}
    for image_path, width, height, boxes, class_ids in items:
        target = label_path(out_dir, image_path)
        if target in written:
            raise DataError(f"{image_path} and {written[target]} would share the label file {target}")
        written[target] = image_path
        ids = np.asarray(class_ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(class_names)):
            raise ValueError(f"{image_path}: class ids {ids.tolist()} outside 0..{len(class_names) - 1}")
        lines = yolo_lines(width, height, boxes, ids)
        write_text_atomic(target, "".join(f"{line}\n" for line in lines))
