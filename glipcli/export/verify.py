"""Self-verification of exported graphs: PyTorch and ONNX Runtime run the same images and
prompt, at more than one image size (dynamic shapes must not be specialised), and the largest
differences are compared with the tolerance of the bundle's precision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glipcli.config import GLIPConfig
from glipcli.model.glip import GLIP
from glipcli.preprocess import prepare_image
from glipcli.prompt import encode_prompt, parse_prompt
from glipcli.runtime.bundle import LEVELS
from glipcli.runtime.sessions import make_session

VERIFY_PROMPT = "red circle. blue rectangle. yellow triangle. person. green dog on the grass."

# Largest allowed error per precision and output: |ours - torch| / max(1, |torch|) for
# centerness and token logits, / max(1, box width or height) for box coordinates.
TOLERANCE: dict[str, dict[str, float]] = {
    "fp32": {"boxes": 1e-3, "centerness": 1e-3, "token_logits": 1e-3},
    "fp16": {"boxes": 2e-2, "centerness": 5e-2, "token_logits": 1e-1},
    "int8": {"boxes": 0.25, "centerness": 0.5, "token_logits": 1.0},
}


def sample_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic scene with coloured shapes on a gradient: structured, not noise."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width * 200 + 30, yy / height * 180 + 40, (xx + yy) / (width + height) * 120 + 60], -1)
    img = (img + rng.normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)
    s = min(height, width)
    cv2.circle(img, (width // 4, height // 3), s // 7, (220, 30, 30), -1)
    cv2.rectangle(img, (width // 2, height // 5), (width // 2 + s // 4, height // 5 + s // 5), (30, 40, 210), -1)
    tri = np.array(
        [
            [width // 3, height - s // 10],
            [width // 3 + s // 4, height - s // 10],
            [width // 3 + s // 8, height - s // 3],
        ]
    )
    cv2.fillPoly(img, [tri.astype(np.int32)], (235, 220, 30))
    return img


@dataclass
class Parity:
    errors: dict[str, float]  # max normalised error per output, over all sizes
    boxes_max_px: float
    sizes: list[list[int]]  # padded input sizes verified (H, W)
    tolerance: dict[str, float]
    provider: str

    @property
    def ok(self) -> bool:
        return all(self.errors[k] <= self.tolerance[k] for k in self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": True,
            "ok": self.ok,
            "max_error": self.errors,
            "boxes_max_abs_px": self.boxes_max_px,
            "tolerance": self.tolerance,
            "image_sizes": self.sizes,
            "provider": self.provider,
            "metric": "max |onnx - torch| / max(1, |torch|); boxes: / max(1, box size)",
        }


def _err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float((np.abs(ours.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref))).max())


def _box_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """Coordinate error relative to the box's own size (a pixel on a 1000-pixel box is 1e-3)."""
    size = np.maximum(ref[..., 2] - ref[..., 0], ref[..., 3] - ref[..., 1])[..., None]
    return float((np.abs(ours.astype(np.float64) - ref) / np.maximum(1.0, np.abs(size))).max())


@torch.no_grad()
def verify_graphs(
    model: GLIP,
    graphs: dict[str, Path],
    tokenizer: Any,
    cfg: GLIPConfig,
    precision: str,
    image_hw: list[tuple[int, int]],
) -> Parity:
    """Run torch and ORT on ``image_hw`` sized scenes; raises nothing, returns the figures."""
    model.eval()
    sessions = {name: make_session(path, "cpu") for name, path in graphs.items()}
    chunk = encode_prompt(parse_prompt(VERIFY_PROMPT), tokenizer, cfg.language.max_query_len)[0]
    ids, mask = chunk.input_ids[None].copy(), chunk.attention_mask[None].copy()
    errors = {"boxes": 0.0, "centerness": 0.0, "token_logits": 0.0}
    box_px, sizes = 0.0, []
    text_ref = model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask))
    (text_onnx,) = sessions["text"].run(None, {"input_ids": ids, "attention_mask": mask})
    for i, (h, w) in enumerate(image_hw):
        prepared = prepare_image(sample_image(h, w, seed=i), cfg.input)
        images = prepared.tensor[None]
        sizes.append(list(images.shape[-2:]))
        levels = model.encode_image(torch.from_numpy(images))
        ref = [t.numpy() for t in model.decode(model.head(levels, text_ref, torch.from_numpy(mask)))]
        levels_onnx = sessions["backbone"].run(None, {"images": images})
        feed = dict(zip(LEVELS, levels_onnx))
        feed.update({"text_features": text_onnx, "text_mask": mask})
        ours = sessions["head"].run(None, feed)
        errors["boxes"] = max(errors["boxes"], _box_err(ours[0], ref[0]))
        for name, o, r in zip(("centerness", "token_logits"), ours[1:], ref[1:]):
            errors[name] = max(errors[name], _err(o, r))
        box_px = max(box_px, float(np.abs(ours[0] - ref[0]).max()))
    return Parity(errors, box_px, sizes, TOLERANCE[precision], "CPUExecutionProvider")
