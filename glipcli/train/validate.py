"""Following training with real detection metrics: the PyTorch model, the same preprocessing,
prompt chunking and official post-processing as inference, COCO mAP on a held-out set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from glipcli.config import GLIPConfig
from glipcli.evaluate import Metrics, coco_metrics
from glipcli.io.coco import load_coco
from glipcli.io.images import load_image
from glipcli.model.glip import GLIP
from glipcli.postprocess import RawDetections, level_sizes, merge_chunks, postprocess, rescale_boxes
from glipcli.preprocess import prepare_image
from glipcli.prompt import PromptChunk, encode_prompt, prompt_from_names


@torch.no_grad()
def predict(model: GLIP, rgb: np.ndarray, chunks: list[PromptChunk], cfg: GLIPConfig) -> RawDetections:
    """Detections in original-image pixels, as the ONNX runtime would give them."""
    model.eval()
    prepared = prepare_image(rgb, cfg.input)
    images = torch.from_numpy(prepared.tensor[None])
    levels = model.encode_image(images)
    hw = level_sizes(tuple(prepared.tensor.shape[-2:]), cfg.anchors.strides)
    parts = []
    for chunk in chunks:
        ids = torch.tensor(chunk.input_ids[None])
        mask = torch.tensor(chunk.attention_mask[None])
        boxes, ctr, logits = model.decode(model.head(levels, model.encode_text(ids, mask), mask))
        det = postprocess(
            boxes[0].numpy(),
            ctr[0].numpy(),
            logits[0].numpy(),
            hw,
            chunk.positive_map,
            prepared.resized_hw,
            cfg.postprocess,
        )
        parts.append(det)
    merged = merge_chunks(parts, cfg.postprocess.detections_per_img)
    boxes = rescale_boxes(merged.boxes, prepared.resized_hw, prepared.original_hw)
    return RawDetections(boxes, merged.scores, merged.labels)


def coco_results(image_id: int, det: RawDetections, category_ids: list[int]) -> list[dict[str, Any]]:
    """GLIP's COCO conversion: inclusive boxes, so w = x2 - x1 + 1."""
    out = []
    for box, score, label in zip(det.boxes, det.scores, det.labels):
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append(
            {
                "image_id": image_id,
                "category_id": category_ids[int(label) - 1],
                "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1],
                "score": float(score),
            }
        )
    return out


def evaluate_model(model: GLIP, tokenizer: Any, dataset_dir: Path, limit: int | None = None) -> Metrics:
    """mAP of ``model`` on a COCO set written by ``write_detection_set`` (category names = prompt)."""
    gt = load_coco(dataset_dir / "annotations.json")
    categories = gt["categories"]
    chunks = encode_prompt(
        prompt_from_names([c["name"] for c in categories]), tokenizer, model.cfg.language.max_query_len
    )
    images = gt["images"][:limit] if limit else gt["images"]
    results = []
    for entry in images:
        rgb = load_image(dataset_dir / "images" / entry["file_name"])
        results += coco_results(entry["id"], predict(model, rgb, chunks, model.cfg), [c["id"] for c in categories])
    if limit:
        keep = {e["id"] for e in images}
        gt = dict(gt, images=images, annotations=[a for a in gt["annotations"] if a["image_id"] in keep])
    return coco_metrics(gt, results)
