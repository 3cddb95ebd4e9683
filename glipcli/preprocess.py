"""Test-time image preprocessing, identical to the official GLIP pipeline (GLIP_SPEC section 3).

Resizing goes through Pillow's bilinear filter, which antialiases when it downscales, because
that is what torchvision's ``F.resize`` does on the PIL image the official code holds; OpenCV's
``INTER_LINEAR`` gives other pixels and so other boxes. The arithmetic after the resize repeats
torchvision's float32 operations one by one so the tensor is bit-identical to the official one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from glipcli.config import InputConfig
from glipcli.errors import ImageError


def resized_size(width: int, height: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(new_w, new_h) by the official ``Resize.get_size``; ``max_size <= 0`` means no cap (demo path).

    The cap uses Python's ``round`` (banker's rounding on .5) and the long side is truncated
    with ``int()``, exactly as the official code, so the sizes (and the boxes) match it.
    """
    size = min_size
    short, long = float(min(width, height)), float(max(width, height))
    if max_size > 0 and long / short * size > max_size:
        size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return width, height
    if width < height:
        return size, int(size * height / width)
    return int(size * width / height), size


@dataclass(frozen=True)
class PreparedImage:
    tensor: np.ndarray  # (3, Hp, Wp) float32, normalised, zero-padded bottom/right
    resized_hw: tuple[int, int]  # un-padded resized size: boxes are clipped to it
    original_hw: tuple[int, int]


def _padded(length: int, size_divisibility: int) -> int:
    if size_divisibility <= 0:
        return length
    return -(-length // size_divisibility) * size_divisibility


def prepare_image(rgb: np.ndarray, cfg: InputConfig) -> PreparedImage:
    """Resize, normalise and pad one (H, W, 3) uint8 RGB image for the backbone."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ImageError(f"expected an (H, W, 3) uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
    height, width = rgb.shape[:2]
    new_w, new_h = resized_size(width, height, cfg.min_size, cfg.max_size)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    # ToTensor: float32 / 255, CHW; then bgr255 Normalize: BGR order, * 255, (x - mean) / std.
    chw = np.asarray(image).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    if cfg.to_bgr255:
        chw = chw[::-1] * np.float32(255)
    mean = np.asarray(cfg.pixel_mean, dtype=np.float32)[:, None, None]
    std = np.asarray(cfg.pixel_std, dtype=np.float32)[:, None, None]
    normalised = (chw - mean) / std
    tensor = np.zeros(
        (3, _padded(new_h, cfg.size_divisibility), _padded(new_w, cfg.size_divisibility)), dtype=np.float32
    )
    tensor[:, :new_h, :new_w] = normalised
    return PreparedImage(tensor=tensor, resized_hw=(new_h, new_w), original_hw=(height, width))


def batch_images(images: Sequence[PreparedImage], size_divisibility: int) -> np.ndarray:
    """(B, 3, Hmax, Wmax) with zero padding at the bottom/right, as the official ``to_image_list``.

    Every image is padded to the largest one of the batch, which changes the head's global
    poolings: batch only images of one size when results must equal single-image runs.
    """
    if not images:
        raise ValueError("batch_images needs at least one image")
    height = _padded(max(im.resized_hw[0] for im in images), size_divisibility)
    width = _padded(max(im.resized_hw[1] for im in images), size_divisibility)
    batch = np.zeros((len(images), 3, height, width), dtype=np.float32)
    for out, im in zip(batch, images, strict=True):
        h, w = im.resized_hw
        out[:, :h, :w] = im.tensor[:, :h, :w]
    return batch
