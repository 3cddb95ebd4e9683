"""Annotated images: boxes and "label 0.87" tags drawn with supervision, written with OpenCV.

supervision's annotators draw with OpenCV and treat numpy scenes as BGR, so the RGB image is
flipped before drawing and back after; colours follow the class (the label's place in the
prompt). Line width and text size follow the image size so tags stay readable on small images
and do not swamp large ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from glipcli.errors import ImageError

# suffix -> OpenCV encoder parameters
OUTPUT_FORMATS: dict[str, list[int]] = {
    ".png": [],
    ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95],
}
MIN_TEXT_SCALE = 0.4  # below this OpenCV's Hershey font is unreadable


def _text_palette(palette: sv.ColorPalette) -> sv.ColorPalette:
    """Black text on light tag colours, white on dark ones (Rec. 601 luma), so every tag reads."""
    return sv.ColorPalette(
        [sv.Color.BLACK if 0.299 * c.r + 0.587 * c.g + 0.114 * c.b > 150 else sv.Color.WHITE for c in palette.colors]
    )


def tag_texts(detections: sv.Detections) -> list[str]:
    """``"<label> <score>"`` per detection, score to 2 decimals."""
    names = detections.data.get("class_name", [str(c) for c in detections.class_id])
    return [f"{name} {score:.2f}" for name, score in zip(names, detections.confidence, strict=True)]


def annotate(rgb: np.ndarray, detections: sv.Detections, texts: Sequence[str] | None = None) -> np.ndarray:
    """A copy of the (H, W, 3) RGB image with boxes and tags (default: :func:`tag_texts`)."""
    height, width = rgb.shape[:2]
    thickness = sv.calculate_optimal_line_thickness((width, height))
    scale = max(MIN_TEXT_SCALE, sv.calculate_optimal_text_scale((width, height)))
    boxes = sv.BoxAnnotator(thickness=thickness, color_lookup=sv.ColorLookup.CLASS)
    tags = sv.LabelAnnotator(
        text_color=_text_palette(sv.ColorPalette.DEFAULT),
        text_scale=scale,
        text_thickness=max(1, round(scale * 2)),
        text_padding=max(2, round(scale * 8)),
        color_lookup=sv.ColorLookup.CLASS,
        smart_position=True,
    )
    scene = np.ascontiguousarray(rgb[..., ::-1])
    scene = boxes.annotate(scene, detections)
    scene = tags.annotate(scene, detections, labels=list(texts) if texts is not None else tag_texts(detections))
    return np.ascontiguousarray(scene[..., ::-1])


def check_output_suffix(path: Path) -> None:
    """Refuse, before any work, an output name whose format we cannot write."""
    if path.suffix.lower() not in OUTPUT_FORMATS:
        known = ", ".join(OUTPUT_FORMATS)
        raise ImageError(f"{path}: cannot write images with suffix {path.suffix or '(none)'!r}; use one of {known}")


def save_image(path: Path, rgb: np.ndarray) -> None:
    """Encode by the suffix before opening the file, so a failed encode leaves an existing file as it was."""
    path = Path(path)
    check_output_suffix(path)
    suffix = path.suffix.lower()
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(rgb[..., ::-1]), OUTPUT_FORMATS[suffix])
    if not ok:
        raise ImageError(f"{path}: OpenCV cannot encode {suffix} images")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
