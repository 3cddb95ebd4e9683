"""``glip eval``: run a model over the images of a COCO ground truth and score it with COCO mAP.

(glipcli.metrics computes the metrics from detections; this module produces the detections.)

The prompt is the ground truth's category names in id order, cleaned as GLIP cleans them
("bow_(weapon)" -> "bow"), or a prompt file. A prompt file maps to the ground truth by name:
each of its classes must be the name of exactly one category (case and spacing aside, raw or
cleaned), in any order, and may carry a description ("stingray: flat and round fish") to compare
prompts. Categories the file does not name are left out of the evaluation, with their
annotations, and reported.

Detection follows the official evaluation: threshold 0 and at most 100 detections per image
unless told otherwise, boxes converted with GLIP's +1 (glipcli.io.coco.coco_boxes), unrounded.
Images listed in the ground truth but missing or unreadable on disk are skipped with their
reason and removed from the evaluation (with their annotations); the command then exits 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glipcli.api import Detector
from glipcli.errors import DataError, PromptError
from glipcli.io.coco import coco_boxes, load_coco
from glipcli.io.images import decode_or_reason
from glipcli.io.prefetch import prefetch
from glipcli.metrics import Metrics, coco_metrics
from glipcli.progress import EXIT_SKIPPED, ImageProgress, Skipped
from glipcli.prompt import Prompt, categories_named, prompt_from_names

EVAL_MAX_DETECTIONS = 100


@dataclass
class EvalReport:
    metrics: Metrics
    model: str
    prompt: str  # the captions the text encoder saw, joined
    categories: dict[int, str]  # evaluated category id -> the prompt label that detects it
    unused: list[str] = field(default_factory=list)  # ground-truth categories not in the prompt file
    skipped: list[Skipped] = field(default_factory=list)  # images not evaluated, with why
    threshold: float = 0.0
    max_detections: int = EVAL_MAX_DETECTIONS
    seconds: float = 0.0
    captions: list[str] = field(default_factory=list)  # the same, one per prompt chunk
    input_size: str = ""  # "SHORT:MAX_LONG" the images were resized to (Detector.size)

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.skipped else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.metrics.to_dict(),
            "model": self.model,
            "prompt": self.prompt,
            "input_size": self.input_size,
            "threshold": self.threshold,
            "max_detections": self.max_detections,
            "categories": {str(k): v for k, v in self.categories.items()},
            "unused_categories": self.unused,
            "skipped_images": [{"file": s.file, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
        }


def category_prompt(categories: list[dict[str, Any]], prompt: Prompt | None) -> tuple[Prompt, list[int]]:
    """The prompt and, per label (in prompt order), the ground-truth category id it detects."""
    ordered = sorted(categories, key=lambda c: c["id"])
    if prompt is None:
        return prompt_from_names([c["name"] for c in ordered]), [c["id"] for c in ordered]
    ids: list[int] = []
    for label, matches in zip(
        prompt.labels, categories_named([label.name for label in prompt.labels], ordered), strict=True
    ):
        if not matches:
            known = ", ".join(repr(c["name"]) for c in ordered[:10]) + (", ..." if len(ordered) > 10 else "")
            raise PromptError(
                f"prompt class {label.name!r} is not a category of the ground truth (categories: {known})"
            )
        if len(matches) > 1:
            raise DataError(f"prompt class {label.name!r} matches {len(matches)} ground-truth categories {matches}")
        if matches[0] in ids:
            raise PromptError(f"prompt class {label.name!r} names the same category as an earlier class")
        ids.append(matches[0])
    return prompt, ids


def evaluate_folder(
    ground_truth: str | Path,
    images: str | Path,
    *,
    detector: Detector | None = None,
    model: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    prompt: Prompt | None = None,
    threshold: float = 0.0,
    max_detections: int = EVAL_MAX_DETECTIONS,
    workers: int = 2,
    progress: Callable[[ImageProgress], None] | None = None,
) -> EvalReport:
    """COCO metrics of a model on the ground truth's images (found under ``images``)."""
    gt = load_coco(ground_truth)
    if not gt["images"]:
        raise DataError(f"{ground_truth}: the ground truth lists no images")
    if not gt["categories"]:
        raise DataError(f"{ground_truth}: the ground truth has no categories")
    images = Path(images)
    if not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    labels, category_ids = category_prompt(gt["categories"], prompt)
    detector = detector or Detector.load(model, device=device, threads=threads)
    prepared = detector.prepare_prompt(labels)
    # GLIP's output, every label's boxes, as COCO mAP expects; checks the values now
    detector.detect_arrays([], prepared, threshold=threshold, max_detections=max_detections, all_labels=True)

    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    entries = gt["images"]
    state = ImageProgress(0, len(entries), 0, 0, 0.0)
    paths = (images / entry["file_name"] for entry in entries)
    with closing(prefetch(decode_or_reason, paths, workers)) as decoded:
        for entry, rgb in zip(entries, decoded):
            if isinstance(rgb, str):
                skipped.append(Skipped(entry["file_name"], rgb))
            else:
                ((_, det),) = detector.detect_arrays(
                    [rgb], prepared, threshold=threshold, max_detections=max_detections, all_labels=True
                )
                results += coco_results(entry["id"], det.xyxy, det.confidence, det.data["label_id"], category_ids)
            done = state.done + 1
            state = ImageProgress(done, len(entries), len(skipped), done, time.perf_counter() - start)
            if progress:
                progress(state)
    if len(skipped) == len(entries):
        raise DataError(
            f"none of the {len(entries)} images of {ground_truth} could be read under {images} "
            f"(first: {skipped[0].file}: {skipped[0].reason}); check --images"
        )
    evaluated = _subset(gt, {s.file for s in skipped}, set(category_ids))
    return EvalReport(
        metrics=coco_metrics(evaluated, results),
        model=detector.name,
        prompt=" ".join(chunk.caption for chunk in prepared.chunks),
        categories={cid: name for cid, name in zip(category_ids, labels.names, strict=True)},
        unused=[c["name"] for c in gt["categories"] if c["id"] not in set(category_ids)],
        skipped=skipped,
        threshold=threshold,
        max_detections=max_detections,
        seconds=time.perf_counter() - start,
        captions=[chunk.caption for chunk in prepared.chunks],
        input_size=detector.size,
    )


def coco_results(
    image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, label_ids: np.ndarray, category_ids: list[int]
) -> list[dict[str, Any]]:
    """COCO result entries of one image, at full precision (rounding could move an IoU past a threshold)."""
    return [
        {
            "image_id": int(image_id),
            "category_id": category_ids[int(label) - 1],
            "bbox": [float(v) for v in box],
            "score": float(score),
        }
        for box, score, label in zip(coco_boxes(boxes_xyxy), scores, label_ids, strict=True)
    ]


def _subset(gt: dict[str, Any], missing_files: set[str], category_ids: set[int]) -> dict[str, Any]:
    """The ground truth without the images that could not be read and the categories not prompted."""
    images = [image for image in gt["images"] if image["file_name"] not in missing_files]
    kept = {image["id"] for image in images}
    annotations = [a for a in gt["annotations"] if a["image_id"] in kept and a["category_id"] in category_ids]
    categories = [c for c in gt["categories"] if c["id"] in category_ids]
    return {**gt, "images": images, "annotations": annotations, "categories": categories}
