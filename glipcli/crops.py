"""Boxes cut out of an image at one fixed size: what the region namer reads (glipcli.model.namer).

One function for training and inference, so the namer sees at run time exactly what it learned on.
"""

from __future__ import annotations

import cv2
import numpy as np


def box_crops(rgb: np.ndarray, boxes: np.ndarray, size: int, margin: float) -> np.ndarray:
    """(N, 3, size, size) float32 in [0, 1]: each xyxy box of ``rgb`` (H, W, 3 uint8) with ``margin``
    of its longer side added around it, clipped to the image, resized (aspect not kept: a box is
    tight around its object, so the object fills the crop whatever its shape). A box outside the
    image gives a black crop."""
    height, width = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        pad = margin * max(x1 - x0, y1 - y0, 1.0)
        left, top = int(max(0.0, np.floor(x0 - pad))), int(max(0.0, np.floor(y0 - pad)))
        right, bottom = int(min(width, np.ceil(x1 + pad) + 1)), int(min(height, np.ceil(y1 + pad) + 1))
        if right > left and bottom > top:
            region = np.ascontiguousarray(rgb[top:bottom, left:right])
            out[i] = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), np.float32) / np.float32(255)
