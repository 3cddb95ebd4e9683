"""Hand-off formats: which exist, where each goes, and turning a finished COCO output into them.

``glip label --format`` writes any of them from its journal and ``glip convert`` from the COCO
file of a finished run; both go through :func:`write_format`, so the two agree box for box.
Boxes, labels and scores are the COCO file's numbers (pixels to 2 decimals, scores to 5); Pascal
VOC alone rounds corners to whole pixels, as the format defines them.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glipcli.errors import ConfigError, DataError, ImageError
from glipcli.io.coco import fsync_dir, load_coco
from glipcli.io.cvat import write_cvat
from glipcli.io.images import read_image_size
from glipcli.io.labelled import LabelledImage, from_coco, rounded_xywh
from glipcli.io.labelstudio import LOCAL_FILES, write_labelstudio
from glipcli.io.voc import write_voc
from glipcli.io.yolo import write_yolo

FORMATS = ("coco", "yolo", "voc", "labelstudio", "cvat")
FILE_FORMATS = {"coco": ".json", "cvat": ".xml"}  # the others are folders
NAMES_IN_FOLDER = {
    "coco": "labels.json",
    "yolo": "yolo",
    "voc": "voc",
    "labelstudio": "labelstudio",
    "cvat": "cvat.xml",
}
"""Where each format goes inside the output folder when several are written at once."""

Images = Callable[[], Iterable[LabelledImage]]
"""Gives the labelled images afresh for each format, so none of them has to sit in memory."""


@dataclass(frozen=True)
class ConvertSummary:
    outputs: dict[str, Path]  # format -> file or folder written
    images: int
    boxes: int


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"coco,voc"`` (or a list) -> ("coco", "voc"); unknown names are refused, repeats dropped."""
    names = text.split(",") if isinstance(text, str) else list(text)
    formats: list[str] = []
    for name in (n.strip().lower() for n in names):
        if name not in FORMATS:
            raise ConfigError(f"unknown format {name!r}: use one or several of {', '.join(FORMATS)} (comma-separated)")
        if name not in formats:
            formats.append(name)
    if not formats:
        raise ConfigError(f"no format given: use one or several of {', '.join(FORMATS)}")
    return tuple(formats)


def default_output(formats: Sequence[str]) -> Path:
    """labels.json for COCO, labels.xml for CVAT, the folder labels/ for the others and for several."""
    if len(formats) == 1 and formats[0] in FILE_FORMATS:
        return Path("labels" + FILE_FORMATS[formats[0]])
    return Path("labels")


def output_targets(formats: Sequence[str], out: Path) -> dict[str, Path]:
    """One format goes to ``out`` itself; several go to their own names inside the folder ``out``."""
    if len(formats) == 1:
        return {formats[0]: Path(out)}
    return {name: Path(out) / NAMES_IN_FOLDER[name] for name in formats}


def check_output(out: Path, formats: Sequence[str]) -> None:
    """Refuse an output of the wrong kind before any work: a folder for a file format, and the reverse."""
    for name, target in output_targets(formats, out).items():
        if name in FILE_FORMATS and target.is_dir():
            raise ConfigError(
                f"{target} is a folder; give a file name for the {name} output (e.g. labels{FILE_FORMATS[name]})"
            )
        if name not in FILE_FORMATS and target.exists() and not target.is_dir():
            raise ConfigError(f"{target} is a file; give a folder for the {name} output (e.g. labels/)")
    if len(formats) > 1 and out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; several formats go into a folder (e.g. labels/)")


def write_format(
    fmt: str,
    target: Path,
    images: Images,
    class_names: Sequence[str],
    model_version: str,
    *,
    scored: bool = True,
    image_url: str = LOCAL_FILES,
) -> None:
    """Write one non-COCO format (COCO has its own streaming writer, which keeps the run's info)."""
    if fmt == "yolo":
        items = ((i.file_name, i.width, i.height, _inclusive(rounded_xywh(i)), i.class_ids) for i in images())
        write_yolo(target, items, class_names)
    elif fmt == "voc":
        write_voc(target, images(), class_names)
    elif fmt == "labelstudio":
        write_labelstudio(target, images(), class_names, model_version, image_url)
    elif fmt == "cvat":
        write_cvat(target, images(), class_names, task_name=model_version, scored=scored)
    else:
        raise ConfigError(f"{fmt!r} cannot be written by write_format; use one of yolo, voc, labelstudio, cvat")


def convert_labels(
    labels: str | Path,
    formats: str | Sequence[str],
    images: str | Path,
    out: str | Path,
    *,
    image_url: str = LOCAL_FILES,
) -> ConvertSummary:
    """Turn the COCO file ``labels`` (of the folder ``images``) into ``formats`` at ``out``.

    The labels must describe the folder: every file they name is there, with the same size (a
    labels file of another folder would put boxes on the wrong pictures). ``out`` must not exist:
    nothing is overwritten, and it appears complete or not at all (written beside it, then renamed).
    """
    chosen = parse_formats(formats)
    if "coco" in chosen:
        raise ConfigError(f"{labels} is already COCO; choose among {', '.join(FORMATS[1:])}")
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ConfigError(f"{out} exists; choose another output or delete it (nothing is overwritten)")
    check_output(out, chosen)
    data = load_coco(labels)
    check_folder(data, Path(images), Path(labels))
    class_names = [category["name"] for category in data["categories"]]
    scored = any("score" in annotation for annotation in data["annotations"])
    model = str(data.get("info", {}).get("model") or "glipcli")
    staging = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        for name, target in output_targets(chosen, staging).items():
            write_format(name, target, lambda: from_coco(data), class_names, model, scored=scored, image_url=image_url)
        os.rename(staging, out)  # a folder, or the single file
    except BaseException:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent if str(out.parent) else Path("."))
    boxes = len(data["annotations"])
    return ConvertSummary(output_targets(chosen, out), len(data["images"]), boxes)


def check_folder(data: dict, images: Path, labels: Path) -> None:
    """Every image the labels name exists under ``images`` with the size they give; else one DataError."""
    if not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    missing: list[str] = []
    for image in data["images"]:
        try:
            size = read_image_size(images / image["file_name"])
        except ImageError:
            size = None
        if size is None:
            missing.append(image["file_name"])
        elif size != (image["width"], image["height"]):
            raise DataError(
                f"{labels} does not match {images}: {image['file_name']} is {image['width']}x{image['height']} "
                f"in the labels but {size[0]}x{size[1]} on disk"
            )
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DataError(
            f"{labels} does not match {images}: {len(missing)} of {len(data['images'])} labelled images "
            f"are not there ({shown})"
        )


def _inclusive(xywh: list[tuple[float, float, float, float]]) -> np.ndarray:
    """GLIP's inclusive ``[x1, y1, x2, y2]`` of COCO boxes (x2 = x + w - 1), for writers that take those."""
    boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:] - 1], axis=1)
