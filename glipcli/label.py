"""``glip label``: a folder of images -> COCO or YOLO pseudo-labels that no crash can lose.

The run, as a user sees it:

- Every image under the folder (recursive, sorted by relative path) gets the id of its place in
  that listing (1-based), so an interrupted-and-resumed run and an uninterrupted one agree.
- Each finished image is appended to a journal beside the output (``<out>.journal``), flushed
  and fsynced; a crash or a kill loses at most the image in flight. ``resume=True`` continues
  from it and gives the same file as an uninterrupted run. Without it an existing journal is
  refused, and a second run writing the same output at the same time is refused by the
  journal's lock.
- Files that cannot be labelled (empty, truncated, not an image, too large, unreadable, broken
  links, link loops) are skipped with their reason: in the summary and in ``<out>.errors.json``.
- The output is streamed from the journal (memory does not grow with the folder) into a temp
  file that replaces ``out`` only when complete; then the journal and its lock are removed.

Exit codes of the command: 0 every image labelled, 2 finished but some files were skipped,
1 nothing done (bad prompt, model, folder or output).

Throughput: decoding runs ahead of inference in worker threads (in order, a bounded window of
``2 x workers`` images); the text encoder runs once per prompt chunk for the whole folder (the
Detector caches it) and the backbone once per image (or per batch).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from glipcli import __version__
from glipcli.api import DEFAULT_THRESHOLD, Detector, PreparedPrompt
from glipcli.errors import ConfigError, DataError, ImageError
from glipcli.io.coco import coco_annotations, coco_categories, coco_image, write_coco_atomic, write_json_atomic
from glipcli.io.folder import list_images
from glipcli.io.images import load_image
from glipcli.io.journal import Journal
from glipcli.io.yolo import label_path, write_yolo
from glipcli.prompt import Prompt

FORMATS = ("coco", "yolo")
EXIT_SKIPPED = 2

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Skipped:
    file: str  # relative to the folder, "/" separators
    reason: str


@dataclass(frozen=True)
class LabelProgress:
    """Where a run stands, passed to the ``progress`` callback after every image."""

    done: int  # images handled (labelled or skipped), resumed ones included
    total: int  # images found in the folder
    skipped: int  # files skipped so far, folder problems included
    processed: int  # images handled by this run (not resumed)
    seconds: float  # since this run started

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.images_per_second
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass
class LabelSummary:
    out: Path
    format: str
    total: int  # images found
    labelled: int
    boxes: int
    resumed: int  # images taken from the journal of an earlier run
    seconds: float
    skipped: list[Skipped] = field(default_factory=list)
    errors_file: Path | None = None  # the sidecar listing the skipped files, when any

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.skipped else 0


def group_by_kind(skipped: Iterable[Skipped]) -> dict[str, list[Skipped]]:
    """Skipped files by kind of problem: the reason without its per-file details.

    "damaged image (broken data stream)" -> "damaged image"; "too large: 9000x9000 ..." -> "too large".
    """
    groups: dict[str, list[Skipped]] = {}
    for item in skipped:
        kind = re.split(r"[:(]| to | as ", item.reason, maxsplit=1)[0].strip() or item.reason
        groups.setdefault(kind, []).append(item)
    return groups


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".journal")


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.json")


def label_folder(
    root: str | Path,
    prompt: str | Prompt | PreparedPrompt,
    out: str | Path,
    *,
    detector: Detector | None = None,
    model: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    fmt: str = "coco",
    threshold: float = DEFAULT_THRESHOLD,
    max_detections: int | None = None,
    batch_size: int = 1,
    workers: int = 2,
    resume: bool = False,
    progress: Callable[[LabelProgress], None] | None = None,
) -> LabelSummary:
    """Label every image under ``root`` and write ``out``: a COCO .json, or a YOLO labels folder.

    ``detector`` (or ``model``/``device``/``threads`` to load one) runs the ``prompt``. With
    ``batch_size`` > 1 consecutive images of the sorted listing share a backbone run (padding
    changes scores slightly, see glipcli.runtime.engine); batches are fixed blocks of the
    listing, so a resumed run batches exactly as an uninterrupted one.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    _check_output(out, fmt)
    root = Path(root)
    listing = list_images(root)
    detector = detector or Detector.load(model, device=device, threads=threads)
    prepared = detector.prepare_prompt(prompt)
    # checks threshold, max detections and batch size now, before any journal exists
    detector.detect_many([], prepared, threshold=threshold, max_detections=max_detections, batch_size=batch_size)
    limit = max_detections or detector.config.postprocess.detections_per_img

    start = time.perf_counter()
    files = [(i + 1, path.relative_to(root).as_posix(), path) for i, path in enumerate(listing.images)]
    skipped = [Skipped(_printable(path.relative_to(root).as_posix()), reason) for path, reason in listing.skipped]
    files, refused = _unwritable_names(files)
    if fmt == "yolo":
        files, collisions = _yolo_collisions(files, out)
        refused += collisions
    header = _header(root, detector, prepared, fmt, threshold, limit, batch_size)
    with Journal.open(journal_path(out), header, resume) as journal:
        done, failed_before = _resumed(journal, {rel: image_id for image_id, rel, _ in files})
        state = LabelProgress(
            len(done) + len(refused), len(listing.images), len(skipped) + len(refused) + failed_before, 0, 0.0
        )
        if progress:
            progress(state)
        blocks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
        todo = [block for block in blocks if any(rel not in done for _, rel, _ in block)]
        paths = (path for block in todo for _, _, path in block)
        with closing(prefetch(decode_or_reason, paths, workers)) as decoded:
            for block in todo:
                items = [(image_id, rel, next(decoded)) for image_id, rel, _ in block]
                for record in _label_block(detector, prepared, items, threshold, limit):
                    if record["file_name"] in done:  # done before a crash; rerun only to batch alike
                        continue
                    journal.append(record)
                    state = _advance(state, "skipped" in record, time.perf_counter() - start)
                    if progress:
                        progress(state)
        labelled, boxes, failed = _totals(journal)
        skipped += refused + failed
        if fmt == "coco":
            _write_coco(out, journal, prepared.prompt, _info(detector, prepared, threshold, limit, batch_size))
        else:
            _write_yolo(out, journal, prepared.labels)
        _write_errors(out, skipped)
        _remove(journal)
    return LabelSummary(
        out=out,
        format=fmt,
        total=len(listing.images),
        labelled=labelled,
        boxes=boxes,
        resumed=len(done),
        seconds=time.perf_counter() - start,
        skipped=skipped,
        errors_file=errors_path(out) if skipped else None,
    )


_END: Any = object()


def prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn(item)`` for each item, in order, computed ahead in ``workers`` threads.

    At most ``2 x workers`` results wait at any time, so memory stays bounded however many
    items come. Work still queued when the iterator is dropped is cancelled.
    """
    window: list[Future[R]] = []
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="glip-decode") as pool:
        try:
            while True:
                while len(window) < 2 * workers:
                    item = next(source, _END)
                    if item is _END:
                        break
                    window.append(pool.submit(fn, item))
                if not window:
                    return
                yield window.pop(0).result()
        finally:
            for future in window:
                future.cancel()


def decode_or_reason(path: Path) -> np.ndarray | str:
    """The image as RGB, or why it cannot be used (the ImageError message without the path)."""
    try:
        return load_image(path)
    except ImageError as exc:
        message = str(exc)
        prefix = f"{path}: "
        return message[len(prefix) :] if message.startswith(prefix) else message


def _label_block(
    detector: Detector,
    prepared: PreparedPrompt,
    items: list[tuple[int, str, np.ndarray | str]],
    threshold: float,
    limit: int,
) -> Iterator[dict[str, Any]]:
    """Journal records of one block of images, in order; the readable ones share one batch."""
    images = [rgb for _, _, rgb in items if isinstance(rgb, np.ndarray)]
    results = detector.detect_many(
        images, prepared, threshold=threshold, max_detections=limit, batch_size=max(len(images), 1)
    )
    for image_id, rel, rgb in items:
        if isinstance(rgb, str):
            yield {"file_name": rel, "id": image_id, "skipped": rgb}
            continue
        _, det = next(results)
        yield {
            "file_name": rel,
            "id": image_id,
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "boxes": det.xyxy.tolist(),
            "scores": det.confidence.tolist(),
            "labels": det.data["label_id"].tolist(),
        }


def _check_output(out: Path, fmt: str) -> None:
    """Refuse an output of the wrong kind before any work: a folder for COCO, a file for YOLO."""
    if fmt == "coco" and out.is_dir():
        raise ConfigError(f"{out} is a folder; give a file name for the COCO output (e.g. labels.json)")
    if fmt == "yolo" and out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder for the YOLO labels (e.g. labels/)")


def _printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogates) shown as escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _unwritable_names(files: list[tuple[int, str, Path]]) -> tuple[list[tuple[int, str, Path]], list[Skipped]]:
    """Files whose names are not valid UTF-8 cannot be named in a COCO (JSON) file: skipped."""
    kept, skipped = [], []
    for entry in files:
        if _printable(entry[1]) == entry[1]:
            kept.append(entry)
        else:
            skipped.append(Skipped(_printable(entry[1]), "file name is not valid UTF-8; rename the file"))
    return kept, skipped


def _yolo_collisions(
    files: list[tuple[int, str, Path]], out: Path
) -> tuple[list[tuple[int, str, Path]], list[Skipped]]:
    """Images whose label file another one already takes (``a.jpg`` and ``a.png``) are skipped."""
    taken = {out / "classes.txt": "the class list"}
    kept, skipped = [], []
    for entry in files:
        target = label_path(out, entry[1])
        if target in taken:
            skipped.append(Skipped(entry[1], f"its YOLO label file {target.name} is already taken by {taken[target]}"))
        else:
            taken[target] = entry[1]
            kept.append(entry)
    return kept, skipped


def _prompt_text(prepared: PreparedPrompt) -> str:
    """The caption the text encoder sees (descriptions included), chunks joined."""
    return " ".join(chunk.caption for chunk in prepared.chunks)


def _header(
    root: Path,
    detector: Detector,
    prepared: PreparedPrompt,
    fmt: str,
    threshold: float,
    limit: int,
    batch_size: int,
) -> dict[str, Any]:
    """Everything that changes the output: a resume with other settings is refused."""
    graphs = detector.bundle.manifest["graphs"]
    return {
        "command": "label",
        "folder": str(root.resolve()),
        "model": detector.bundle.name,
        "graphs_sha256": {name: entry["sha256"] for name, entry in graphs.items()},
        "prompt": _prompt_text(prepared),
        "classes": prepared.labels,
        "threshold": threshold,
        "max_detections": limit,
        "batch_size": batch_size,
        "format": fmt,
    }


def _info(
    detector: Detector, prepared: PreparedPrompt, threshold: float, limit: int, batch_size: int
) -> dict[str, Any]:
    manifest = detector.bundle.manifest
    return {
        "description": "pseudo-labels by glipcli",
        "model": detector.bundle.name,
        "precision": detector.bundle.precision,
        "source": manifest.get("source", {}),
        "graphs_sha256": {name: entry["sha256"] for name, entry in manifest["graphs"].items()},
        "prompt": _prompt_text(prepared),
        "threshold": threshold,
        "max_detections": limit,
        "batch_size": batch_size,
        "bbox": "[x1, y1, x2 - x1 + 1, y2 - y1 + 1] of GLIP's inclusive pixel boxes",
        "tool": f"glipcli {__version__}",
        "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _resumed(journal: Journal, ids: dict[str, int]) -> tuple[set[str], int]:
    """Files an earlier run finished, and how many of them it skipped.

    Refuses a journal whose files no longer have the same ids (the folder changed).
    """
    done: set[str] = set()
    skipped = 0
    for record in journal.records():
        if ids.get(record["file_name"]) != record["id"]:
            raise DataError(
                f"{journal.path}: {record['file_name']} is no longer image {record['id']} of the folder "
                "(files were added, removed or renamed); delete the journal to start over"
            )
        done.add(record["file_name"])
        skipped += "skipped" in record
    return done, skipped


def _advance(state: LabelProgress, skipped: bool, seconds: float) -> LabelProgress:
    return LabelProgress(state.done + 1, state.total, state.skipped + skipped, state.processed + 1, seconds)


def _totals(journal: Journal) -> tuple[int, int, list[Skipped]]:
    """(images labelled, boxes, files skipped while decoding) over the whole journal."""
    labelled = boxes = 0
    skipped = []
    for record in journal.records():
        if "skipped" in record:
            skipped.append(Skipped(record["file_name"], record["skipped"]))
        else:
            labelled += 1
            boxes += len(record["scores"])
    return labelled, boxes, skipped


def _labelled(journal: Journal) -> Iterator[dict[str, Any]]:
    return (record for record in journal.records() if "skipped" not in record)


def _write_coco(out: Path, journal: Journal, prompt: Prompt, info: dict[str, Any]) -> None:
    """Two streaming passes over the journal (images, then annotations) into one atomic file."""
    categories = coco_categories(prompt.names, [label.description for label in prompt.labels])
    images = (coco_image(r["id"], r["file_name"], r["width"], r["height"]) for r in _labelled(journal))
    write_coco_atomic(out, info, images, _annotations(journal), categories)


def _annotations(journal: Journal) -> Iterator[dict[str, Any]]:
    next_id = 1
    for record in _labelled(journal):
        boxes = np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4)
        annotations = coco_annotations(record["id"], boxes, record["scores"], record["labels"], first_id=next_id)
        next_id += len(annotations)
        yield from annotations


def _write_yolo(out: Path, journal: Journal, names: list[str]) -> None:
    items = (
        (
            r["file_name"],
            r["width"],
            r["height"],
            np.asarray(r["boxes"], dtype=np.float64).reshape(-1, 4),
            np.asarray(r["labels"], dtype=np.int64) - 1,
        )
        for r in _labelled(journal)
    )
    write_yolo(out, items, names)


def _write_errors(out: Path, skipped: list[Skipped]) -> None:
    """``<out>.errors.json`` lists the skipped files; a stale one from an earlier run is removed."""
    path = errors_path(out)
    if skipped:
        write_json_atomic(path, [{"file": item.file, "reason": item.reason} for item in skipped])
    else:
        path.unlink(missing_ok=True)


def _remove(journal: Journal) -> None:
    """The output is complete: drop the journal and its lock (unlinked while still held)."""
    journal.path.unlink()
    journal.path.with_name(journal.path.name + ".lock").unlink(missing_ok=True)
    journal.close()
