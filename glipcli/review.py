"""``glip review``: one self-contained HTML page to look over a labelled folder before correcting it.

Design, for folders of 10,000 images opened straight from disk:

- Thumbnails are embedded, small (JPEG, long side ``thumb`` px, ~3-5 kB each), so the page is one
  file that can be mailed, archived next to the labels or opened on a machine without the images;
  each thumbnail links to the original by a path relative to the page, for a closer look where
  the images are at hand. Referencing the originals instead would make the browser decode
  full-size photos for every card.
- Everything else is data: the page holds the labels as one JSON block and draws only the page
  of cards in view (60 at a time), so opening it costs one JSON parse whatever the folder's size.
- Boxes are drawn over the thumbnails as SVG from the same numbers the COCO file holds.
- Filters (classes, score range, sort order, page) live in the URL's ``#`` part, so a filtered
  view can be bookmarked or shared, and tests can open the page already filtered.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from glipcli.convert import check_folder
from glipcli.errors import ConfigError, DataError, ImageError
from glipcli.io.coco import load_coco, write_text_atomic
from glipcli.io.images import load_image
from glipcli.io.labelled import from_coco, rounded_xywh, score
from glipcli.review_page import TEMPLATE

THUMB = 160
THUMB_QUALITY = 70


@dataclass(frozen=True)
class ReviewSummary:
    out: Path
    images: int
    boxes: int
    skipped: int  # files listed in the errors file
    bytes: int


def errors_file_of(labels: Path) -> Path:
    """Where ``glip label`` lists the files it skipped: ``<labels>.errors.json`` beside them."""
    return labels.with_name(labels.name + ".errors.json")


def write_review(
    labels: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    errors: str | Path | None = None,
    metrics: str | Path | None = None,
    thumb: int = THUMB,
    workers: int = 2,
) -> ReviewSummary:
    """Write the review page of the COCO file ``labels`` (of the folder ``images``) to ``out``.

    ``errors`` is the list of skipped files (default: the one ``glip label`` left beside the
    labels, when there is one); ``metrics`` a ``glip eval --json`` file to show with the settings.
    ``out`` must not exist.
    """
    labels, images, out = Path(labels), Path(images), Path(out)
    if out.exists() or out.is_symlink():
        raise ConfigError(f"{out} exists; choose another output or delete it (nothing is overwritten)")
    if thumb < 16:
        raise ConfigError(f"thumbnails must be at least 16 px, got {thumb}")
    data = load_coco(labels)
    check_folder(data, images, labels)
    errors = Path(errors) if errors is not None else errors_file_of(labels)
    skipped = _read_json_list(errors) if errors.exists() else []
    page_data = {
        "title": labels.name,
        "info": data.get("info", {}),
        "metrics": _read_json(Path(metrics)) if metrics is not None else None,
        "classes": [category["name"] for category in data["categories"]],
        "scored": any("score" in annotation for annotation in data["annotations"]),
        "folder": os.path.relpath(images.resolve(), out.resolve().parent).replace(os.sep, "/"),
        "images": [],
        "skipped": skipped,
    }
    labelled = list(from_coco(data))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="glip-thumb") as pool:
        thumbs = pool.map(lambda i: _thumbnail(images / i.file_name, thumb), labelled)
        for image, uri in zip(labelled, thumbs):
            page_data["images"].append(_entry(image, uri))
    html = TEMPLATE.replace("/*DATA*/null", _script_json(page_data))
    write_text_atomic(out, html)
    boxes = sum(len(image.class_ids) for image in labelled)
    return ReviewSummary(out, len(labelled), boxes, len(skipped), len(html.encode("utf-8")))


def _entry(image: Any, thumbnail: str) -> list[Any]:
    """``[file, width, height, thumbnail, boxes]``, each box ``[class, score, x, y, w, h]`` as in COCO."""
    scores: Iterable[float | None] = image.scores if image.scores is not None else [None] * len(image.class_ids)
    boxes = [
        [int(c), None if s is None else score(s), *xywh]
        for c, s, xywh in zip(image.class_ids, scores, rounded_xywh(image), strict=True)
    ]
    return [image.file_name, image.width, image.height, thumbnail, boxes]


def _thumbnail(path: Path, size: int) -> str:
    """A JPEG data URI of the upright image, long side ``size`` px; "" when it cannot be read now."""
    try:
        rgb = load_image(path)
    except ImageError:
        return ""
    h, w = rgb.shape[:2]
    scale = min(1.0, size / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else ""


def _script_json(obj: object) -> str:
    """JSON safe inside a <script> element: no "</" can close it early."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from None


def _read_json_list(path: Path) -> list[dict[str, str]]:
    """The errors file: ``[{"file": ..., "reason": ...}, ...]``."""
    items = _read_json(path)
    if not isinstance(items, list) or not all(isinstance(i, dict) and "file" in i for i in items):
        raise DataError(f"{path}: not an errors file of glip label (a list of {{file, reason}})")
    return [{"file": str(i["file"]), "reason": str(i.get("reason", ""))} for i in items]
