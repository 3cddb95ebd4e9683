"""Test-time image preprocessing, identical to the official GLIP pipeline (GLIP_SPEC section 3).

Resizing goes through Pillow's bilinear filter, which antialiases when it downscales, because
that is what torchvision's ``F.resize`` does on the PIL image the official code holds; OpenCV's
``INTER_LINEAR`` gives other pixels and so other boxes. The arithmetic after the resize repeats
torchvision's float32 operations one by one so the tensor is bit-identical to the official one.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from glipcli.config import InputConfig
from glipcli.errors import ConfigError, ImageError


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


SIZE_LIMITS = (32, 4096)
"""Shortest and longest side a size may ask for: below 32 the coarsest level is one pixel, above
4096 one image of the reduced model's head needs tens of gigabytes."""


def with_size(cfg: InputConfig, size: str | int | Sequence[int] | None) -> InputConfig:
    """``cfg`` with another test size: ``SHORT`` or ``"SHORT:MAX_LONG"`` (or a pair), in pixels.

    The shorter side is resized to SHORT unless the longer would then exceed MAX_LONG (the
    official rule, :func:`resized_size`). SHORT alone keeps the model's ratio of the two (glip-nano
    384:768, GLIP-T 800:1333), so ``480`` on GLIP-T means 480:800. ``None`` keeps ``cfg``.
    Smaller inputs run faster and find fewer small objects: ``glip eval --size`` measures it.
    """
    if size is None:
        return cfg
    short, long = _parse_size(size)
    if long is None:
        long = round(short * cfg.max_size / cfg.min_size) if cfg.max_size > 0 else 0
    low, high = SIZE_LIMITS
    if not low <= short <= high or (long and not short <= long <= high):
        raise ConfigError(f"size {_shown(size)}: SHORT must be {low}-{high} pixels and MAX_LONG from SHORT to {high}")
    return dataclasses.replace(cfg, min_size=short, max_size=long)


def size_text(cfg: InputConfig) -> str:
    """``"SHORT:MAX_LONG"`` of ``cfg``, as ``--size`` takes it and outputs record it."""
    return f"{cfg.min_size}:{cfg.max_size}"


def _parse_size(size: str | int | Sequence[int]) -> tuple[int, int | None]:
    bad = ConfigError(f"size {_shown(size)}: expected SHORT or SHORT:MAX_LONG in whole pixels, e.g. 480 or 480:800")
    if isinstance(size, str):
        parts = size.strip().split(":")
        if len(parts) > 2 or not all(part.strip().isdigit() for part in parts):
            raise bad
        values = [int(part) for part in parts]
    elif isinstance(size, numbers.Integral) and not isinstance(size, bool):
        values = [int(size)]
    elif isinstance(size, Sequence) and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size):
        values = [int(v) for v in size]
    else:
        raise bad
    if len(values) not in (1, 2):
        raise bad
    return values[0], values[1] if len(values) == 2 else None


def _shown(size: object) -> str:
    return repr(size) if not isinstance(size, str) else repr(size.strip())


@dataclass(frozen=True)
class PreparedImage:
    tensor: np.ndarray  # (3, Hp, Wp) float32, normalised, zero-padded bottom/right
    resized_hw: tuple[int, int]  # un-padded resized size: boxes are clipped to it
    original_hw: tuple[int, int]
    others: tuple[PreparedImage, ...] = ()  # the same image at a multi-scale test's further sizes
    rgb: np.ndarray | None = None  # the original pixels, for the region namer's crops


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
    # ToTensor: float32 / 255, CHW; then bgr255 Normalize: BGR order, * 255, (x - mean) / std. The
    # same float32 operations in place, in the padded tensor: no temporaries (3x faster, same bits).
    tensor = np.zeros(
        (3, _padded(new_h, cfg.size_divisibility), _padded(new_w, cfg.size_divisibility)), dtype=np.float32
    )
    hwc = np.asarray(image)
    view = tensor[:, :new_h, :new_w]
    view[...] = (hwc[..., ::-1] if cfg.to_bgr255 else hwc).transpose(2, 0, 1)
    view /= np.float32(255)
    if cfg.to_bgr255:
        view *= np.float32(255)
    view -= np.asarray(cfg.pixel_mean, dtype=np.float32)[:, None, None]
    view /= np.asarray(cfg.pixel_std, dtype=np.float32)[:, None, None]
    return PreparedImage(tensor=tensor, resized_hw=(new_h, new_w), original_hw=(height, width), rgb=rgb)


def batch_images(images: Sequence[PreparedImage], size_divisibility: int) -> np.ndarray:
    """(B, 3, Hmax, Wmax) with zero padding at the bottom/right, as the official ``to_image_list``.

    Every image is padded to the largest one of the batch, which changes the head's global
    poolings: batch only images of one size when results must equal single-image runs.
    """
    if not images:
        raise ValueError("batch_images needs at least one image")
    height = _padded(max(im.resized_hw[0] for im in images), size_divisibility)
    width = _padded(max(im.resized_hw[1] for im in images), size_divisibility)
    if len(images) == 1 and images[0].tensor.shape[1:] == (height, width):
        return images[0].tensor[None]  # already padded with zeros (prepare_image): no copy, 3 ms an image
    batch = np.zeros((len(images), 3, height, width), dtype=np.float32)
    for out, im in zip(batch, images, strict=True):
        h, w = im.resized_hw
        out[:, :h, :w] = im.tensor[:, :h, :w]
    return batch
