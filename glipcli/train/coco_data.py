"""COCO detection data as grounding samples, for fine-tuning and prompt tuning.

The prompt is the categories' names in id order, cleaned and chunked exactly as ``glip eval``
and ``glip detect`` build it, so a model learns on the very captions it is used with (a tuned
prompt is found by its caption). An image with a prompt of several chunks becomes one sample per
chunk, holding the boxes of that chunk's categories; the other objects are background for it.

Everything that could stop training half-way is checked here, before the first step: every
image is decoded once and its size compared with the annotations. Unusable data raises a one-line
DataError; boxes are repaired where that is unambiguous, and each repair is listed in ``issues``:

- a box reaching past the image is clipped to it;
- a box entirely outside the image, or with no area left, is dropped;
- crowd annotations (``iscrowd: 1``) are ignored, as GLIP's detection loaders do.

Pseudo-labels (a ``glip label`` COCO file) join the gold data above a score threshold; their
categories must be gold categories (matched by cleaned name). A teacher often names one object
with several classes ("orange star" and "orange heart" on the same shape): of pseudo-labels that
overlap (IoU >= 0.5 by default), whatever their classes, only the highest-scoring one is kept.
Pseudo-labelled images without a box above the threshold are left out: an unconfident teacher is
no evidence of background.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from glipcli.errors import DataError
from glipcli.io.coco import load_coco, write_json_atomic
from glipcli.io.images import decode_or_reason, load_image
from glipcli.io.prefetch import prefetch
from glipcli.prompt import Prompt, PromptChunk, categories_named, encode_prompt, prompt_from_names
from glipcli.selection import one_label_per_object
from glipcli.train.synth import GroundingSample

Span = tuple[int, int]


@dataclass(frozen=True)
class DataIssue:
    """A repair made to the data: which file and annotation, and what was done."""

    file: str
    annotation_id: int | None
    what: str


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    boxes: np.ndarray  # (n, 4) float32 xyxy pixel edges (x2 = one past the last pixel)
    labels: np.ndarray  # (n,) int64 label ids 1.. in prompt order
    pseudo: bool = False


class DetectionSource:
    """Map-style sample source: sample i is a pure function of (seed, i).

    Items are (image, chunk) pairs; ``length`` (e.g. steps x batch size) walks them epoch by
    epoch, each epoch in its own seeded order, so training sees every image before any repeats.
    """

    def __init__(
        self,
        images: Sequence[LabelledImage],
        prompt: Prompt,
        chunks: Sequence[PromptChunk],
        *,
        seed: int = 0,
        length: int | None = None,
        issues: Sequence[DataIssue] = (),
    ) -> None:
        if not images:
            raise DataError("no labelled images to train on")
        self.images = tuple(images)
        self.prompt = prompt
        self.chunks = tuple(chunks)
        self.spans = [chunk_spans(chunk, prompt) for chunk in self.chunks]
        self.seed = seed
        self.items = len(self.images) * len(self.chunks)
        self.length = self.items if length is None else length
        self.issues = list(issues)
        self._order: tuple[int, np.ndarray] | None = None

    @property
    def captions(self) -> list[str]:
        return [chunk.caption for chunk in self.chunks]

    @property
    def boxes(self) -> int:
        return sum(len(image.boxes) for image in self.images)

    def with_length(self, length: int) -> DetectionSource:
        """The same data walked for ``length`` samples (e.g. steps x batch size)."""
        other = copy.copy(self)
        other.length, other._order = length, None
        return other

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> GroundingSample:
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} of {self.length}")
        epoch, position = divmod(index, self.items)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.items))
        image_index, chunk_index = divmod(int(self._order[1][position]), len(self.chunks))
        return self.sample(image_index, chunk_index)

    def sample(self, image_index: int, chunk_index: int) -> GroundingSample:
        image = self.images[image_index]
        chunk, spans = self.chunks[chunk_index], self.spans[chunk_index]
        keep = np.isin(image.labels, chunk.label_ids)
        box_spans = [[spans[int(label)]] for label in image.labels[keep]]
        return GroundingSample(load_image(image.path), image.boxes[keep], chunk.caption, box_spans)


def chunk_spans(chunk: PromptChunk, prompt: Prompt) -> dict[int, Span]:
    """Label id -> character span of its name in the chunk's caption ("a. b. c.")."""
    spans: dict[int, Span] = {}
    position = 0
    for label_id in chunk.label_ids:
        name = prompt.labels[label_id - 1].name
        start = chunk.caption.find(name, position)
        if start < 0:  # the caption grammar changed under us: a bug, not a user error
            raise AssertionError(f"{name!r} not found in {chunk.caption!r}")
        spans[label_id] = (start, start + len(name))
        position = start + len(name)
    return spans


def load_detection_data(
    annotations: str | Path,
    images: str | Path,
    tokenizer: Tokenizer,
    max_query_len: int,
    *,
    pseudo: str | Path | None = None,
    pseudo_images: str | Path | None = None,
    pseudo_threshold: float = 0.4,
    pseudo_nms: float | None = 0.5,
    shots: int | None = None,
    seed: int = 0,
    workers: int = 2,
) -> DetectionSource:
    """Gold COCO data (optionally ``shots`` images per category, and pseudo-labels) as a source.

    ``images`` is the folder the gold ``file_name`` entries are relative to; ``pseudo_images``
    that of the pseudo-labels (default: ``images``). ``pseudo_nms`` keeps one pseudo-label per
    object (see the module docstring); None keeps them all.
    """
    if not 0.0 <= pseudo_threshold <= 1.0:
        raise DataError(f"pseudo-label threshold must be between 0 and 1, got {pseudo_threshold}")
    if pseudo_nms is not None and not 0.0 < pseudo_nms <= 1.0:
        raise DataError(f"pseudo-label NMS IoU must be in (0, 1], got {pseudo_nms}")
    if shots is not None and shots < 1:
        raise DataError(f"shots must be at least 1, got {shots}")
    annotations = Path(annotations)
    gt = load_coco(annotations)
    if not gt["categories"]:
        raise DataError(f"{annotations}: no categories: there is nothing to name in a prompt")
    if not gt["annotations"] and pseudo is None:
        raise DataError(f"{annotations}: the annotation list is empty: there is nothing to learn from")
    categories = sorted(gt["categories"], key=lambda c: c["id"])
    prompt = prompt_from_names([c["name"] for c in categories])
    label_of = {c["id"]: i + 1 for i, c in enumerate(categories)}
    issues: list[DataIssue] = []
    entries = _entries(gt, Path(images), label_of, None, issues)
    if shots is not None:
        entries = _few_shots(entries, shots, len(categories), seed)
    if pseudo is not None:
        pseudo = Path(pseudo)
        teacher = load_coco(pseudo)
        pseudo_labels = {}
        named = categories_named([c["name"] for c in teacher["categories"]], categories)
        for c, matches in zip(teacher["categories"], named, strict=True):
            if len(matches) != 1:
                what = "is not a category" if not matches else f"names {len(matches)} categories {matches}"
                raise DataError(f"{pseudo}: pseudo-label category {c['name']!r} {what} of {annotations}")
            pseudo_labels[c["id"]] = label_of[matches[0]]
        folder = Path(pseudo_images) if pseudo_images is not None else Path(images)
        entries += _entries(teacher, folder, pseudo_labels, pseudo_threshold, issues, pseudo_nms)
    _check_images(entries, annotations, workers)
    labelled = [_repair(entry, issues) for entry in entries]
    labelled = [image for image in labelled if image is not None]
    if not any(len(image.boxes) for image in labelled):
        where = f"{annotations} and {pseudo}" if pseudo is not None else str(annotations)
        raise DataError(f"{where}: no usable box (none left above the threshold or inside the images)")
    chunks = encode_prompt(prompt, tokenizer, max_query_len)
    return DetectionSource(labelled, prompt, chunks, seed=seed, issues=issues)


@dataclass
class _Entry:
    """An image and its raw annotations, before the boxes are checked against its real size."""

    file: str
    path: Path
    size: tuple[int, int]  # (width, height) the annotations claim
    annotations: list[dict[str, Any]]
    pseudo: bool


def write_issues(source: DetectionSource, out: Path) -> Path | None:
    """``out/data_issues.json``: every repair made to the data, so a user can check each one; None when none."""
    if not source.issues:
        return None
    path = out / "data_issues.json"
    write_json_atomic(path, [{"file": i.file, "annotation_id": i.annotation_id, "what": i.what} for i in source.issues])
    return path


def _entries(
    data: dict[str, Any],
    folder: Path,
    label_of: dict[int, int],
    threshold: float | None,
    issues: list[DataIssue],
    nms_iou: float | None = None,
) -> list[_Entry]:
    """Images with their annotations; with a ``threshold`` (pseudo-labels), only confident ones,
    and with ``nms_iou`` one label per object."""
    per_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in data["images"]}
    files = {image["id"]: image["file_name"] for image in data["images"]}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            issues.append(DataIssue(files[ann["image_id"]], ann.get("id"), "crowd annotation ignored"))
            continue
        if threshold is not None:
            score = ann.get("score")
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                raise DataError(f"pseudo-labels need a score per annotation; annotation {ann.get('id')} has none")
            if score < threshold:
                continue
        per_image[ann["image_id"]].append({**ann, "label": label_of[ann["category_id"]]})
    entries = []
    for image in data["images"]:
        anns = per_image[image["id"]]
        if threshold is not None and nms_iou is not None:
            anns = _one_label_per_object(anns, nms_iou)
        if threshold is not None and not anns:
            continue
        size = (image["width"], image["height"])
        entries.append(_Entry(image["file_name"], folder / image["file_name"], size, anns, threshold is not None))
    return entries


def _one_label_per_object(anns: list[dict[str, Any]], iou: float) -> list[dict[str, Any]]:
    """Highest score first, drop boxes overlapping a kept one by ``iou`` or more, whatever their class
    (the selection detection makes by default, without its fragment rule)."""
    if not anns:
        return anns
    xywh = np.asarray([ann["bbox"] for ann in anns], dtype=np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    scores = np.asarray([ann["score"] for ann in anns])
    labels = np.asarray([ann["label"] for ann in anns])
    return [anns[i] for i in one_label_per_object(xyxy, scores, labels, iou, inside=None)]


def _few_shots(entries: list[_Entry], shots: int, categories: int, seed: int) -> list[_Entry]:
    """Images in a seeded order, each kept while one of its categories has fewer than ``shots`` images."""
    counts = np.zeros(categories + 1, dtype=np.int64)
    kept = []
    for i in np.random.default_rng(seed).permutation(len(entries)):
        labels = {ann["label"] for ann in entries[i].annotations}
        if any(counts[label] < shots for label in labels):
            kept.append(entries[i])
            for label in labels:
                counts[label] += 1
    return kept


def _check_images(entries: list[_Entry], annotations: Path, workers: int) -> None:
    """Decode every image once: missing, unreadable or resized files stop us before training."""
    problems = []
    with closing(prefetch(decode_or_reason, [e.path for e in entries], workers)) as decoded:
        for entry, rgb in zip(entries, decoded):
            if isinstance(rgb, str):
                problems.append(f"{entry.path}: {rgb}")
            elif (rgb.shape[1], rgb.shape[0]) != entry.size:
                got = f"{rgb.shape[1]}x{rgb.shape[0]}"
                problems.append(f"{entry.path} is {got}, annotated as {entry.size[0]}x{entry.size[1]}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{len(problems)} image(s) of {annotations} cannot be used: {problems[0]}{more}")


def _repair(entry: _Entry, issues: list[DataIssue]) -> LabelledImage | None:
    """Boxes clipped to the image (those with no area inside it dropped), as pixel-edge xyxy."""
    w, h = entry.size
    boxes, labels = [], []
    for ann in entry.annotations:
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        box = np.array([x, y, x + bw, y + bh])
        clipped = np.clip(box, 0, [w, h, w, h])
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            outside = box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h
            why = "outside the image" if outside else "less than a pixel wide or tall"
            issues.append(DataIssue(entry.file, ann.get("id"), f"box {ann['bbox']} dropped: {why}"))
            continue
        if not np.array_equal(clipped, box):
            issues.append(DataIssue(entry.file, ann.get("id"), f"box {ann['bbox']} clipped to the image"))
        boxes.append(clipped)
        labels.append(ann["label"])
    if entry.pseudo and not boxes:
        return None
    return LabelledImage(
        entry.path,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        entry.pseudo,
    )
