"""``glip label``: a folder of images -> COCO or YOLO pseudo-labels that no crash can lose.

The run, as a user sees it:

- Every image under the folder (recursive, sorted by relative path) gets the id of its place in
  that listing (1-based), so an interrupted-and-resumed run and an uninterrupted one agree.
- Each finished image is appended to a journal beside the output (``<out>.journal``) before the
  next starts, and fsynced within a second: a crash or a kill of the process loses at most the
  image in flight, a crash of the OS at most the last second. ``resume=True`` continues
  from it and gives the same file as an uninterrupted run. Without it an existing journal is
  refused, and a second run writing the same output at the same time is refused by the
  journal's lock.
- Files that cannot be labelled (empty, truncated, not an image, too large, unreadable, broken
  links, link loops) are skipped with their reason: in the summary and in ``<out>.errors.json``.
- The output is streamed from the journal (memory does not grow with the folder) into a temp
  file that replaces ``out`` only when complete; then the journal and its lock are removed.

With ``engine="ray"`` (glipcli.label_ray) Ray workers journal into shards beside the journal
(``<out>.journal.d/``); the output is assembled from journal and shards in id order by the same
writers, so it equals the local engine's, and either engine resumes what the other left.

Exit codes of the command: 0 every image labelled, 2 finished but some files were skipped,
1 nothing done (bad prompt, model, folder or output).

Throughput: decoding and preprocessing run ahead of inference in worker threads (in order, a
bounded window of ``2 x workers`` images); the text encoder runs once per prompt chunk for the whole folder (the
Detector caches it) and the backbone once per image (or per batch).
"""

from __future__ import annotations

import errno
import functools
import heapq
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from glipcli import __version__
from glipcli.api import Detector, PreparedPrompt, selection_info
from glipcli.convert import check_output, output_targets, parse_formats, write_format
from glipcli.detections import Found
from glipcli.errors import ConfigError, DataError, ImageError
from glipcli.io.coco import coco_annotations, coco_categories, coco_image, write_coco_atomic, write_json_atomic
from glipcli.io.folder import list_images
from glipcli.io.images import load_image
from glipcli.io.journal import Journal, JournalLocked
from glipcli.io.labelled import from_record
from glipcli.io.yolo import label_path
from glipcli.preprocess import PreparedImage
from glipcli.prompt import Prompt
from glipcli.selection import Thresholds, select

ENGINES = ("local", "ray")
EXIT_SKIPPED = 2
SHARD_WAIT_SECONDS = 30.0  # for Ray workers that are done to exit and release their shards
_SHARD = ".journal"

Block = list[tuple[int, str, Path]]  # (image id, file relative to the folder, path) of consecutive images
Labeller = Callable[[list[Block], set[str], Journal], Iterator[bool]]
"""An engine: journals the images of the blocks that are not done, yielding per image whether it was skipped."""

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


def is_url(root: str | Path) -> bool:
    """``s3://bucket/photos``, ``file:///data``, ...: a folder only the ray engine reads."""
    return isinstance(root, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", root) is not None


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".journal")


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.json")


def shards_path(out: Path) -> Path:
    """The folder of journal shards that Ray workers write (glipcli.label_ray), one journal each."""
    return out.with_name(out.name + ".journal.d")


def label_folder(
    root: str | Path,
    prompt: str | Prompt | PreparedPrompt,
    out: str | Path,
    *,
    detector: Detector | None = None,
    model: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    size: str | int | None = None,
    fmt: str = "coco",
    threshold: float | None = None,
    class_thresholds: Mapping[str, float] | None = None,
    all_labels: bool = False,
    max_detections: int | None = None,
    batch_size: int = 1,
    workers: int = 2,
    resume: bool = False,
    progress: Callable[[LabelProgress], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    num_workers: int = 1,
    gpus_per_worker: float = 0.0,
) -> LabelSummary:
    """Label every image under ``root`` and write ``out``: a COCO .json, or a YOLO labels folder.

    ``detector`` (or ``model``/``device``/``threads``/``size`` to load one) runs the ``prompt``. With
    ``batch_size`` > 1 consecutive images of the sorted listing share a backbone run (padding
    changes scores slightly, see glipcli.runtime.engine); batches are fixed blocks of the
    listing, so a resumed run batches exactly as an uninterrupted one.

    What is written is what :meth:`Detector.__call__` gives with the same ``threshold``,
    ``class_thresholds`` and ``all_labels``: one label per object unless ``all_labels``. The
    journal holds GLIP's output (every label, above the lowest threshold) and the selection is
    applied when the output is written, so a run resumed with or without ``all_labels`` agrees.

    ``engine="ray"`` runs the model in ``num_workers`` Ray actors (``gpus_per_worker`` GPUs each)
    on the cluster at ``address`` (default: a Ray already initialised, else a local one), each
    loading the bundle of ``detector`` with ``device`` and ``threads``; see glipcli.label_ray.
    The output is the same, and either engine resumes what the other left. Only this engine
    reads a ``root`` given as a URL (``s3://...``, ``file://...``; see :func:`label_ray.list_url`).
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    formats = parse_formats(fmt)
    fmt = ",".join(formats)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if engine == "ray":
        from glipcli import label_ray

        label_ray.check_arguments(num_workers, gpus_per_worker)  # before the model loads
    out = Path(out)
    check_output(out, formats)
    targets = output_targets(formats, out)
    if is_url(root):
        if engine != "ray":
            raise ConfigError(f"{root}: a folder given by URL is read by Ray workers; use the ray engine")
        base, listing, filesystem = label_ray.list_url(str(root))
        folder = str(root)
    else:
        base, filesystem = Path(root), None
        listing = list_images(base)
        folder = str(base.resolve())
    detector = detector or Detector.load(model, device=device, threads=threads, size=size)
    prepared = detector.prepare_prompt(prompt)
    # checks thresholds, max detections and batch size now, before any journal exists
    thresholds = detector.thresholds(prepared, threshold, class_thresholds)
    floor = thresholds.floor  # what the journal keeps: nothing below it can be written
    detector.detect_arrays([], prepared, threshold=floor, max_detections=max_detections, batch_size=batch_size)
    limit = max_detections or detector.config.postprocess.detections_per_img

    start = time.perf_counter()
    files = [(i + 1, path.relative_to(base).as_posix(), path) for i, path in enumerate(listing.images)]
    skipped = [Skipped(_printable(path.relative_to(base).as_posix()), reason) for path, reason in listing.skipped]
    files, refused = _unwritable_names(files)
    for name in {"yolo", "voc"}.intersection(formats):  # both name a label file by the image's path less its suffix
        files, collisions = _yolo_collisions(files, targets[name])
        refused += collisions
    header = _header(folder, detector, prepared, fmt, floor, limit, batch_size)
    _check_shards(shards_path(out), resume)
    if engine == "local":
        runner: AbstractContextManager[Labeller] = nullcontext(
            lambda todo, done, journal: _label_here(journal, detector, prepared, todo, done, floor, limit, workers)
        )
    else:
        runner = label_ray.RayLabeller(
            shards=shards_path(out),
            header=header,
            filesystem=filesystem,
            model=detector.bundle.path,
            device=device,
            threads=threads,
            size=detector.size,
            prepared=prepared,
            threshold=floor,
            limit=limit,
            address=address,
            num_workers=num_workers,
            gpus_per_worker=gpus_per_worker,
        )
    with (
        runner as label_todo,
        Journal.open(journal_path(out), header, resume) as journal,
        _Shards(shards_path(out), header) as shards,
    ):
        done, failed_before = _resumed([journal, *shards.journals], {rel: image_id for image_id, rel, _ in files})
        state = LabelProgress(
            len(done) + len(refused), len(listing.images), len(skipped) + len(refused) + failed_before, 0, 0.0
        )
        if progress:
            progress(state)
        blocks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
        todo = [block for block in blocks if any(rel not in done for _, rel, _ in block)]
        handled = label_todo(todo, done, journal)
        with closing(handled):
            for was_skipped in handled:
                state = _advance(state, was_skipped, time.perf_counter() - start)
                if progress:
                    progress(state)
        shards.open_new()

        def records() -> Iterator[dict[str, Any]]:
            return (_select(r, thresholds, all_labels) for r in _in_id_order([journal, *shards.journals]))

        labelled, boxes, failed = _totals(records())
        skipped += refused + failed
        with _journal_kept_on_failure(out, journal.path):
            for name, target in targets.items():
                if name == "coco":
                    info = _info(detector, prepared, thresholds, threshold is None, limit, batch_size, all_labels)
                    _write_coco(target, records, prepared.prompt, info)
                else:
                    images = lambda: map(from_record, _labelled(records))  # noqa: E731
                    write_format(name, target, images, prepared.labels, detector.bundle.name)
            _write_errors(out, skipped)
        shards.remove()
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


def _label_here(
    journal: Journal,
    detector: Detector,
    prepared: PreparedPrompt,
    todo: list[Block],
    done: set[str],
    threshold: float,
    limit: int,
    workers: int,
) -> Iterator[bool]:
    """The local engine: journal each image of ``todo`` in this process; yield whether it was skipped."""
    paths = (path for block in todo for _, _, path in block)
    with closing(prefetch(functools.partial(prepare_or_reason, detector), paths, workers)) as decoded:
        for block in todo:
            items = [(image_id, rel, next(decoded)) for image_id, rel, _ in block]
            for record in label_block(detector, prepared, items, threshold, limit):
                if record["file_name"] in done:  # done before a crash; rerun only to batch alike
                    continue
                journal.append(record)
                yield "skipped" in record


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


def decode_or_reason(path: Path, load: Callable[[Path], np.ndarray] = load_image) -> np.ndarray | str:
    """The image as RGB, or why it cannot be used (the ImageError message without the path)."""
    try:
        return load(path)
    except ImageError as exc:
        message = str(exc)
        prefix = f"{path}: "
        return message[len(prefix) :] if message.startswith(prefix) else message


def prepare_or_reason(detector: Detector, path: Path) -> PreparedImage | str:
    """The model's input for the image, or why there is none. Runs in the prefetch threads, beside
    the model: with the faster NMS and batched fsync it took glip label on glip-nano from 0.83 to
    1.00 of the model-only images/s (``python -m bench --quick``, docs/speed.md)."""
    rgb = decode_or_reason(path)
    return rgb if isinstance(rgb, str) else detector.prepare(rgb)


def label_block(
    detector: Detector,
    prepared: PreparedPrompt,
    items: list[tuple[int, str, np.ndarray | PreparedImage | str]],
    threshold: float,
    limit: int,
) -> Iterator[dict[str, Any]]:
    """Journal records of one block of images, in order; the readable ones share one batch.

    Records hold GLIP's output (every label's boxes) scoring at least ``threshold``; both engines
    label through here, so their records agree.
    """
    images = [image for _, _, image in items if not isinstance(image, str)]
    results = detector.detect_arrays(
        images, prepared, threshold=threshold, max_detections=limit, all_labels=True, batch_size=max(len(images), 1)
    )
    for image_id, rel, image in items:
        if isinstance(image, str):
            yield {"file_name": rel, "id": image_id, "skipped": image}
            continue
        _, det = next(results)
        height, width = image.original_hw if isinstance(image, PreparedImage) else image.shape[:2]
        yield {
            "file_name": rel,
            "id": image_id,
            "width": int(width),
            "height": int(height),
            "boxes": det.xyxy.tolist(),
            "scores": det.confidence.tolist(),
            "labels": det.data["label_id"].tolist(),
        }


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
            skipped.append(Skipped(entry[1], f"its label file {target.name} is already taken by {taken[target]}"))
        else:
            taken[target] = entry[1]
            kept.append(entry)
    return kept, skipped


def _prompt_text(prepared: PreparedPrompt) -> str:
    """The caption the text encoder sees (descriptions included), chunks joined."""
    return " ".join(chunk.caption for chunk in prepared.chunks)


def _header(
    folder: str,
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
        "folder": folder,
        "model": detector.bundle.name,
        "graphs_sha256": {name: entry["sha256"] for name, entry in graphs.items()},
        "input_size": detector.size,
        "prompt": _prompt_text(prepared),
        "classes": prepared.labels,
        "threshold": threshold,
        "max_detections": limit,
        "batch_size": batch_size,
        "format": fmt,
    }


def _info(
    detector: Detector,
    prepared: PreparedPrompt,
    thresholds: Thresholds,
    defaulted: bool,
    limit: int,
    batch_size: int,
    all_labels: bool,
) -> dict[str, Any]:
    manifest = detector.bundle.manifest
    return {
        "description": "pseudo-labels by glipcli",
        "model": detector.bundle.name,
        "precision": detector.bundle.precision,
        "source": manifest.get("source", {}),
        "graphs_sha256": {name: entry["sha256"] for name, entry in manifest["graphs"].items()},
        "prompt": _prompt_text(prepared),
        **selection_info(detector, prepared, thresholds, defaulted, all_labels),
        "max_detections": limit,
        "batch_size": batch_size,
        "bbox": "[x1, y1, x2 - x1 + 1, y2 - y1 + 1] of GLIP's inclusive pixel boxes",
        "tool": f"glipcli {__version__}",
        "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _resumed(journals: list[Journal], ids: dict[str, int]) -> tuple[set[str], int]:
    """Files earlier runs finished, and how many of them they skipped.

    Refuses a journal whose files no longer have the same ids (the folder changed).
    """
    done: set[str] = set()
    skipped = 0
    for journal in journals:
        for record in journal.records():
            if ids.get(record["file_name"]) != record["id"]:
                raise DataError(
                    f"{journal.path}: {record['file_name']} is no longer image {record['id']} of the folder "
                    "(files were added, removed or renamed); delete the journal to start over"
                )
            if record["file_name"] not in done:  # a retried Ray worker may have journaled it twice
                skipped += "skipped" in record
            done.add(record["file_name"])
    return done, skipped


def _advance(state: LabelProgress, skipped: bool, seconds: float) -> LabelProgress:
    return LabelProgress(state.done + 1, state.total, state.skipped + skipped, state.processed + 1, seconds)


def _check_shards(folder: Path, resume: bool) -> None:
    """Like the journal, shards of an earlier run are continued with ``resume`` and never dropped."""
    if not resume and any(folder.glob(f"*{_SHARD}")):
        raise DataError(
            f"{folder}: journal shards of an earlier run exist; pass --resume to continue it, "
            "or delete them to start over"
        )


def open_shard(folder: Path, header: dict[str, Any]) -> Journal:
    """A new journal shard for one Ray worker, in the folder :class:`_Shards` reads."""
    return Journal.open(folder / f"{uuid.uuid4().hex}{_SHARD}", header, resume=False)


class _Shards:
    """The journal shards in ``folder``, each opened (locked, checked against ``header``) for reading.

    Each shard holds its records in id order (a worker starts a new shard rather than go back),
    as the main journal does, so all of them merge by id in one streaming pass.
    """

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.folder = folder
        self.header = header
        self.journals: list[Journal] = []

    def open_new(self) -> None:
        """Open the shards not open yet, waiting for their writers to exit (SHARD_WAIT_SECONDS).

        Whoever holds the main journal's lock owns the run, so the workers of any other run on
        these shards have lost their driver and are exiting: waiting for them is safe.
        """
        known = {journal.path for journal in self.journals}
        for path in sorted(self.folder.glob(f"*{_SHARD}")):
            if path not in known:
                self.journals.append(_open_when_free(path, self.header, SHARD_WAIT_SECONDS))

    def remove(self) -> None:
        for journal in self.journals:
            _remove(journal)
        self.journals = []
        with suppress(OSError):  # absent, or a lock left by a worker killed before its first line
            self.folder.rmdir()

    def __enter__(self) -> _Shards:
        try:
            self.open_new()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for journal in self.journals:
            journal.close()


def _open_when_free(path: Path, header: dict[str, Any], wait: float) -> Journal:
    """A worker that just finished may still hold its shard's lock for a moment while it exits."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return Journal.open(path, header, resume=True)
        except JournalLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _in_id_order(journals: list[Journal]) -> Iterator[dict[str, Any]]:
    """The records of all journals by image id, each once: the order of an uninterrupted local run."""
    last = 0
    for record in heapq.merge(*(_ascending(journal) for journal in journals), key=lambda r: r["id"]):
        if record["id"] != last:
            last = record["id"]
            yield record


def _ascending(journal: Journal) -> Iterator[dict[str, Any]]:
    last = 0
    for record in journal.records():
        if record["id"] < last:
            raise DataError(f"{journal.path}: image {record['id']} after image {last}; delete it to start over")
        last = record["id"]
        yield record


def _totals(records: Iterable[dict[str, Any]]) -> tuple[int, int, list[Skipped]]:
    """(images labelled, boxes, files skipped while decoding) over all records."""
    labelled = boxes = 0
    skipped = []
    for record in records:
        if "skipped" in record:
            skipped.append(Skipped(record["file_name"], record["skipped"]))
        else:
            labelled += 1
            boxes += len(record["scores"])
    return labelled, boxes, skipped


Records = Callable[[], Iterator[dict[str, Any]]]


def _select(record: dict[str, Any], thresholds: Thresholds, all_labels: bool) -> dict[str, Any]:
    """The record as it is written (see :func:`selection.select`); values exactly as journaled."""
    if "skipped" in record:
        return record
    detections = Found(
        xyxy=np.asarray(record["boxes"], dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray(record["scores"], dtype=np.float32),
        class_id=np.asarray(record["labels"], dtype=np.int64) - 1,
        data={"index": np.arange(len(record["scores"])), "label_id": np.asarray(record["labels"], dtype=np.int64)},
    )
    keep = select(detections, thresholds, all_labels=all_labels).data["index"].tolist()
    return {**record, **{key: [record[key][i] for i in keep] for key in ("boxes", "scores", "labels")}}


def _labelled(records: Records) -> Iterator[dict[str, Any]]:
    return (record for record in records() if "skipped" not in record)


def _write_coco(out: Path, records: Records, prompt: Prompt, info: dict[str, Any]) -> None:
    """Two streaming passes over the records (images, then annotations) into one atomic file."""
    categories = coco_categories(prompt.names, [label.description for label in prompt.labels])
    images = (coco_image(r["id"], r["file_name"], r["width"], r["height"]) for r in _labelled(records))
    write_coco_atomic(out, info, images, _annotations(records), categories)


def _annotations(records: Records) -> Iterator[dict[str, Any]]:
    next_id = 1
    for record in _labelled(records):
        boxes = np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4)
        annotations = coco_annotations(record["id"], boxes, record["scores"], record["labels"], first_id=next_id)
        next_id += len(annotations)
        yield from annotations


def _write_errors(out: Path, skipped: list[Skipped]) -> None:
    """``<out>.errors.json`` lists the skipped files; a stale one from an earlier run is removed."""
    path = errors_path(out)
    if skipped:
        write_json_atomic(path, [{"file": item.file, "reason": item.reason} for item in skipped])
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _journal_kept_on_failure(out: Path, journal: Path) -> Iterator[None]:
    """A failed write of the output (a full disk, a quota) becomes one line: which file, and that the
    journal still holds every image, so ``--resume`` writes the output without labelling again."""
    try:
        yield
    except OSError as exc:
        what = exc.strerror or str(exc)
        fix = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that"
        raise DataError(
            f"cannot write {exc.filename or out}: {what}; every image is kept in the journal {journal}: "
            f"{fix} and rerun the same command with --resume to write the output"
        ) from None


def _remove(journal: Journal) -> None:
    """The output is complete: drop a journal and its lock (unlinked while still held)."""
    journal.path.unlink()
    journal.path.with_name(journal.path.name + ".lock").unlink(missing_ok=True)
    journal.close()
