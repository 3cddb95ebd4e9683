"""COCO detection files: small pure builders, atomic writers (whole or streamed) and a validating reader.

Unlike supervision's ``as_coco`` this keeps scores, numbers categories from 1 in prompt order
(as COCO does), keeps file names relative to the image root (sub-folders included) and takes
image sizes from the caller instead of decoding every image again.

Boxes: GLIP's ``[x1, y1, x2, y2]`` are inclusive pixel coordinates (x2 is the last pixel a box
covers), so ``bbox`` = ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` as in GLIP's own COCO evaluation.

Precision: pixel values (bbox, area) are rounded to 2 decimals, scores to 5; finer digits are
below what a detector can claim and only bloat the file.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import numpy as np

from glipcli.errors import DataError

PIXEL_DECIMALS = 2
SCORE_DECIMALS = 5


def coco_categories(names: Sequence[str], descriptions: Sequence[str | None] | None = None) -> list[dict]:
    """Categories with ids 1.. in prompt order; a description is kept when one was given."""
    if descriptions is not None and len(descriptions) != len(names):
        raise ValueError(f"{len(descriptions)} descriptions for {len(names)} names")
    categories = []
    for i, name in enumerate(names):
        category = {"id": i + 1, "name": name, "supercategory": "object"}
        if descriptions is not None and descriptions[i] is not None:
            category["description"] = descriptions[i]
        categories.append(category)
    return categories


def coco_image(image_id: int, file_name: str, width: int, height: int) -> dict:
    """One ``images`` entry; ``file_name`` is relative to the image root, with "/" separators."""
    return {"id": int(image_id), "file_name": file_name, "width": int(width), "height": int(height)}


def coco_boxes(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) ``[x, y, w, h]`` from GLIP's inclusive ``[x1, y1, x2, y2]``: w = x2 - x1 + 1.

    GLIP's boxes name the last pixel they cover (x2 is inside), so its COCO conversion adds one
    (GLIP_SPEC §9); COCO ground truths count pixels the same way (a 10-pixel-wide object has w 10).
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2] + 1], axis=1)


def coco_annotations(
    image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, category_ids: np.ndarray, first_id: int
) -> list[dict]:
    """Annotations of one image, ids ``first_id``.., bbox ``[x, y, w, h]`` by :func:`coco_boxes` (+1)."""
    boxes = coco_boxes(boxes_xyxy)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    category_ids = np.asarray(category_ids).reshape(-1)
    if not len(boxes) == len(scores) == len(category_ids):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores, {len(category_ids)} category ids")
    annotations = []
    for k, ((x, y, w, h), score, category_id) in enumerate(zip(boxes, scores, category_ids, strict=True)):
        annotations.append(
            {
                "id": int(first_id) + k,
                "image_id": int(image_id),
                "category_id": int(category_id),
                "bbox": [_px(x), _px(y), _px(w), _px(h)],
                "area": _px(w * h),
                "score": round(float(score), SCORE_DECIMALS),
                "iscrowd": 0,
            }
        )
    return annotations


def coco_document(images: list[dict], annotations: list[dict], categories: list[dict], info: dict) -> dict:
    """The whole file; ``info`` says what made it (model, prompt, glipcli version)."""
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON so that ``path`` holds either the old or the new document, never a partial one."""
    write_text_atomic(Path(path), _json(obj) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, ``os.replace``, fsync of the folder (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(text)


def write_coco_atomic(
    path: Path, info: dict, images: Iterable[dict], annotations: Iterable[dict], categories: list[dict]
) -> None:
    """The document :func:`coco_document` builds, written entry by entry and atomically.

    ``images`` and ``annotations`` are consumed lazily (e.g. two passes over a journal), so a
    folder of any size is written in bounded memory.
    """
    with atomic_file(Path(path)) as f:
        f.write('{"info": ' + _json(info) + ', "licenses": [], "images": [')
        _write_list(f, images)
        f.write('], "annotations": [')
        _write_list(f, annotations)
        f.write('], "categories": ' + _json(categories) + "}\n")


@contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text file that appears at ``path`` complete, or not at all.

    Written to a temp file in the same folder, fsynced, moved over ``path`` with ``os.replace``,
    then the folder is fsynced. A crash leaves at most a hidden ``.<name>.<random>.tmp`` beside
    the target. The file is created with mode 0o666 so the user's umask applies, as for any file
    they create.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk fails a write, which names no file (or the hidden temp): name the target
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _json(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def _write_list(f: TextIO, items: Iterable[object]) -> None:
    separator = ""
    for item in items:
        f.write(separator + _json(item))
        separator = ", "


def images_folder(annotations: Path, images: Path | None = None) -> Path:
    """``images``, else the ``images`` folder beside the annotations file (the layout of COCO datasets)."""
    return images if images is not None else annotations.parent / "images"


def load_coco(path: str | Path) -> dict:
    """Read a COCO detection file, checking what later code relies on; DataError names the flaw."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: COCO file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read COCO file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a COCO file (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a COCO file (top level is not an object)")
    data.setdefault("annotations", [])
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: not a COCO file ('{key}' missing or not a list)")
    image_ids = _ids(path, data["images"], "images", {"file_name": str, "width": int, "height": int})
    category_ids = _ids(path, data["categories"], "categories", {"name": str})
    _ids(path, data["annotations"], "annotations", {"image_id": int, "category_id": int, "bbox": list})
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        if ann["image_id"] not in image_ids:
            raise DataError(f"{where}: unknown image_id {ann['image_id']}")
        if ann["category_id"] not in category_ids:
            raise DataError(f"{where}: unknown category_id {ann['category_id']}")
        bbox = ann["bbox"]
        if len(bbox) != 4 or not all(_is_number(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise DataError(f"{where}: bbox must be [x, y, width, height] with width, height >= 0, got {bbox}")
    return data


def _ids(path: Path, entries: list, key: str, fields: dict[str, type]) -> set[int]:
    """Check each entry is an object with a unique integer id and the typed fields; return the ids."""
    ids: set[int] = set()
    for i, entry in enumerate(entries):
        where = f"{path}: {key}[{i}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: not an object")
        for field, kind in {"id": int, **fields}.items():
            value = entry.get(field)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise DataError(f"{where}: '{field}' missing or not {kind.__name__}")
        if entry["id"] in ids:
            raise DataError(f"{where}: duplicate id {entry['id']}")
        ids.add(entry["id"])
    return ids


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _px(value: float) -> float:
    return round(float(value), PIXEL_DECIMALS)


def fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); folders cannot be opened this way on Windows."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
