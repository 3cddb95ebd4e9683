"""``glip calibrate``: the score threshold that suits a model, chosen on a COCO validation set.

A box is *right* when its label names the object's category and IoU >= 0.5, each object matched
once (greedily, best score first). On the one-label output (glipcli.selection) the threshold that
maximises F1 of right boxes (2 right / (boxes + objects)) is the model's default, written into its
bundle's manifest under ``calibration``; bundles without one use ``api.DEFAULT_THRESHOLD``. Several
validation sets, each with its own prompt, are pooled into one choice.

A model scores classes it was trained on higher than classes it never saw, so one threshold
serves one kind badly. Validation sets of new classes (``--new-names``) choose a second threshold,
recorded as ``calibration.new_names`` with the list of classes the first one was chosen for
(``calibration.names``); a prompt's classes outside that list get the second one.

The detector runs once per image at threshold 0 (GLIP's output); every candidate threshold is
then a filter of the same one-label output, since selection never depends on lower scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glipcli import __version__
from glipcli.errors import BundleError, DataError
from glipcli.evaluation import EVAL_MAX_DETECTIONS, category_prompt
from glipcli.io.coco import coco_boxes, load_coco, write_text_atomic
from glipcli.io.images import decode_or_reason
from glipcli.io.prefetch import prefetch
from glipcli.progress import ImageProgress
from glipcli.prompt import Prompt, name_key
from glipcli.runtime.bundle import MANIFEST
from glipcli.selection import Thresholds, select

if TYPE_CHECKING:
    import supervision as sv

    from glipcli.api import Detector

MATCH_IOU = 0.5
CANDIDATES = np.round(np.arange(0.05, 0.951, 0.01), 2)  # finer than scores are meaningful


@dataclass(frozen=True)
class Scene:
    """One validation image: GLIP's output (all labels, threshold 0) and its objects."""

    image_id: int
    detections: sv.Detections
    gt_xyxy: np.ndarray  # (m, 4)
    gt_categories: np.ndarray  # (m,) category ids
    category_of_label: np.ndarray  # label id (1-based) -> category id, index 0 unused


@dataclass(frozen=True)
class Counts:
    boxes: int
    right: int
    objects: int

    @property
    def precision(self) -> float:
        return self.right / self.boxes if self.boxes else 0.0

    @property
    def recall(self) -> float:
        return self.right / self.objects if self.objects else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.right / (self.boxes + self.objects) if self.boxes + self.objects else 0.0


@dataclass(frozen=True)
class Calibration:
    threshold: float
    f1: float
    precision: float
    recall: float
    images: int
    objects: int
    ground_truth: str  # its folder and file name
    data: dict[str, Any]  # the ground truth's COCO info (e.g. the generator's seed)
    input_size: str | None = None  # the test size(s) it was chosen at: the bundle's default size

    def to_manifest(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rule": f"max F1 of right label and IoU >= {MATCH_IOU} at one label per object",
            "glipcli_version": __version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def right_boxes(scene: Scene, detections: sv.Detections) -> np.ndarray:
    """Per detection (in the given order, taken as best first): does it match an unmatched object?"""
    from supervision import box_iou_batch

    right = np.zeros(len(detections), dtype=bool)
    if not len(detections) or not len(scene.gt_xyxy):
        return right
    boxes = coco_boxes(detections.xyxy)
    boxes[:, 2:] += boxes[:, :2]  # compared as COCO compares them: GLIP's inclusive +1 width
    iou = box_iou_batch(boxes, scene.gt_xyxy)
    categories = scene.category_of_label[np.asarray(detections.data["label_id"])]
    free = np.ones(len(scene.gt_xyxy), dtype=bool)
    for i in np.argsort(-detections.confidence, kind="stable"):
        candidates = np.where(free & (scene.gt_categories == categories[i]), iou[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] >= MATCH_IOU:
            right[i], free[j] = True, False
    return right


def counts(scenes: Sequence[Scene], thresholds: Thresholds, *, all_labels: bool = False) -> Counts:
    """Boxes written, right ones and objects over the scenes, as ``glip label`` would write them."""
    boxes = right = objects = 0
    for scene in scenes:
        kept = select(scene.detections, thresholds, all_labels=all_labels)
        boxes += len(kept)
        right += int(right_boxes(scene, kept).sum())
        objects += len(scene.gt_xyxy)
    return Counts(boxes, right, objects)


def best_threshold(scenes: Sequence[Scene], candidates: np.ndarray = CANDIDATES) -> tuple[float, Counts]:
    """The candidate with the highest F1 at one label per object (the lowest of equals) and its counts."""
    objects = sum(len(scene.gt_xyxy) for scene in scenes)
    scores, right = [], []
    for scene in scenes:  # one selection at threshold 0; a higher threshold only filters it
        kept = select(scene.detections, Thresholds(0.0))
        scores.append(kept.confidence)
        right.append(right_boxes(scene, kept))
    all_scores, all_right = np.concatenate([np.zeros(0), *scores]), np.concatenate([np.zeros(0, bool), *right])
    table = [Counts(int((all_scores >= t).sum()), int(all_right[all_scores >= t].sum()), objects) for t in candidates]
    best = max(range(len(candidates)), key=lambda k: (table[k].f1, -k))
    return float(candidates[best]), table[best]


def load_scenes(
    ground_truth: str | Path,
    images: str | Path,
    detector: Detector,
    *,
    prompt: Prompt | None = None,
    workers: int = 2,
    progress: Callable[[ImageProgress], None] | None = None,
) -> list[Scene]:
    """GLIP's output (all labels, threshold 0, at most 100 boxes) on each readable ground-truth image."""
    gt = load_coco(ground_truth)
    if not gt["images"] or not gt["annotations"]:
        raise DataError(f"{ground_truth}: the ground truth needs images and annotations to calibrate on")
    labels, category_ids = category_prompt(gt["categories"], prompt)
    prepared = detector.prepare_prompt(labels)
    lookup = np.asarray([0, *category_ids])
    objects: dict[int, list[dict[str, Any]]] = {}
    for annotation in gt["annotations"]:
        if annotation["category_id"] in category_ids and not annotation.get("iscrowd", 0):
            objects.setdefault(annotation["image_id"], []).append(annotation)
    folder = Path(images)
    scenes: list[Scene] = []
    entries = gt["images"]
    with closing(_decoded(folder, entries, workers)) as decoded:
        for done, (entry, rgb) in enumerate(zip(entries, decoded, strict=True), start=1):
            if not isinstance(rgb, str):
                found = detector(rgb, prepared, threshold=0.0, max_detections=EVAL_MAX_DETECTIONS, all_labels=True)
                mine = objects.get(entry["id"], [])
                xywh = np.asarray([a["bbox"] for a in mine], dtype=np.float64).reshape(-1, 4)
                xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
                cats = np.asarray([a["category_id"] for a in mine], dtype=np.int64)
                scenes.append(Scene(entry["id"], found, xyxy, cats, lookup))
            if progress:
                progress(ImageProgress(done, len(entries), done - len(scenes), done, 0.0))
    if not scenes:
        raise DataError(f"none of the {len(entries)} images of {ground_truth} could be read under {folder}")
    return scenes


def _decoded(folder: Path, entries: list[dict[str, Any]], workers: int) -> Iterator[np.ndarray | str]:
    return prefetch(decode_or_reason, (folder / entry["file_name"] for entry in entries), workers)


def choose_threshold(
    scenes: Sequence[Scene], ground_truths: Sequence[str | Path], input_size: str | None = None
) -> Calibration:
    """The threshold of best F1 over the scenes (detected at ``input_size``), and its figures, as the
    manifest records them.

    Scenes of several validation sets (each prompted with its own classes, e.g. the classes a model
    was trained on and ones it never saw) are pooled: one threshold for both kinds of prompt."""
    threshold, best = best_threshold(scenes)
    infos = [load_coco(gt).get("info", {}) for gt in ground_truths]
    return Calibration(
        threshold=threshold,
        f1=round(best.f1, 4),
        precision=round(best.precision, 4),
        recall=round(best.recall, 4),
        images=len(scenes),
        objects=best.objects,
        ground_truth=" + ".join(f"{Path(gt).parent.name}/{Path(gt).name}" for gt in ground_truths),
        data=infos[0] if len(infos) == 1 else {"sets": infos},
        input_size=input_size,
    )


def prompt_names(ground_truth: str | Path, prompt: Prompt | None = None) -> list[str]:
    """The class names a validation set is prompted with (its categories, or ``prompt``'s classes)."""
    labels, _ = category_prompt(load_coco(ground_truth)["categories"], prompt)
    return list(labels.names)


def check_new_names(known: Sequence[str], new_sets: dict[str, Sequence[str]]) -> None:
    """A set given for new classes must not hold a class the main threshold is chosen for."""
    keys = {name_key(name) for name in known}
    for ground_truth, names in new_sets.items():
        shared = [name for name in names if name_key(name) in keys]
        if shared:
            listed = ", ".join(repr(n) for n in shared[:5]) + (", ..." if len(shared) > 5 else "")
            raise DataError(f"{ground_truth}: a --new-names set holds classes of the main sets ({listed})")


def write_calibration(
    bundle: str | Path, calibration: Calibration, new_names: tuple[Sequence[str], Calibration] | None = None
) -> Path:
    """Record the threshold in the bundle's manifest (atomically); graph hashes are untouched, so it loads.

    ``new_names`` is (the classes ``calibration`` was chosen for, the threshold for all others)."""
    path = Path(bundle) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    record = calibration.to_manifest()
    if new_names is not None:
        names, other = new_names
        record["names"] = list(names)
        skip = ("glipcli_version", "date", "input_size")
        record["new_names"] = {k: v for k, v in other.to_manifest().items() if k not in skip}
    manifest["calibration"] = record
    try:
        write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")  # as glip export writes it
    except OSError as exc:
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
