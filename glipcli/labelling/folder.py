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

With ``engine="ray"`` (glipcli.labelling.ray_runner) Ray workers journal into shards beside the
journal (``<out>.journal.d/``); the output is assembled from journal and shards in id order by the
same writers, so it equals the local engine's (glipcli.labelling.local_runner), and either engine
resumes what the other left.

Exit codes of the command: 0 every image labelled, 2 finished but some files were skipped,
1 nothing done (bad prompt, model, folder or output).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from glipcli import __version__
from glipcli.api import Detector, PreparedPrompt, selection_info
from glipcli.convert import check_output, output_targets, parse_formats
from glipcli.errors import ConfigError
from glipcli.io.folder import list_images
from glipcli.io.journal import Journal
from glipcli.io.yolo import label_path
from glipcli.labelling import journals, writers
from glipcli.labelling.local_runner import LocalLabeller
from glipcli.labelling.ray_runner import RayLabeller, list_url
from glipcli.labelling.ray_runner import check_arguments as check_ray_arguments
from glipcli.labelling.records import Labeller, select_record, totals
from glipcli.progress import EXIT_SKIPPED, ImageProgress, Skipped
from glipcli.prompt import Prompt
from glipcli.selection import Thresholds

ENGINES = ("local", "ray")


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


def is_url(root: str | Path) -> bool:
    """``s3://bucket/photos``, ``file:///data``, ...: a folder only the ray engine reads."""
    return isinstance(root, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", root) is not None


def check_arguments(
    fmt: str, engine: str = "local", workers: int = 2, num_workers: int = 1, gpus_per_worker: float = 0.0
) -> list[str]:
    """The output formats ``fmt`` names; refuses bad settings (and a missing Ray) before a model
    loads or any journal exists, so the command line can call it first too."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    formats = parse_formats(fmt)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if engine == "ray":
        check_ray_arguments(num_workers, gpus_per_worker)
    return formats


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
    progress: Callable[[ImageProgress], None] | None = None,
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
    loading the bundle of ``detector`` with ``device`` and ``threads``; see
    glipcli.labelling.ray_runner. The output is the same, and either engine resumes what the other
    left. Only this engine reads a ``root`` given as a URL (``s3://...``, ``file://...``; see
    :func:`ray_runner.list_url`).
    """
    formats = check_arguments(fmt, engine, workers, num_workers, gpus_per_worker)
    fmt = ",".join(formats)
    out = Path(out)
    check_output(out, formats)
    targets = output_targets(formats, out)
    if is_url(root):
        if engine != "ray":
            raise ConfigError(f"{root}: a folder given by URL is read by Ray workers; use the ray engine")
        base, listing, filesystem = list_url(str(root))
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
    shards_folder = journals.shards_path(out)
    journals.check_shards(shards_folder, resume)
    runner: AbstractContextManager[Labeller]
    if engine == "local":
        runner = LocalLabeller(detector, prepared, floor, limit, workers)
    else:
        runner = RayLabeller(
            shards=shards_folder,
            header=header,
            filesystem=filesystem,
            model=detector.bundle.path,
            device=device,
            threads=threads,
            size=detector.size,
            namer=detector.namer is not None,
            prepared=prepared,
            threshold=floor,
            limit=limit,
            address=address,
            num_workers=num_workers,
            gpus_per_worker=gpus_per_worker,
        )
    with (
        runner as label_todo,
        Journal.open(journals.journal_path(out), header, resume) as journal,
        journals.Shards(shards_folder, header) as shards,
    ):
        done, failed_before = journals.resumed(
            [journal, *shards.journals], {rel: image_id for image_id, rel, _ in files}
        )
        state = ImageProgress(
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
            return (select_record(r, thresholds, all_labels) for r in journals.in_id_order([journal, *shards.journals]))

        labelled, boxes, failed = totals(records())
        skipped += refused + failed
        with writers.journal_kept_on_failure(out, journal.path):
            info = _info(detector, prepared, thresholds, threshold is None, limit, batch_size, all_labels)
            writers.write_outputs(targets, records, prepared.prompt, prepared.labels, detector.bundle.name, info)
            writers.write_errors(out, skipped)
        shards.remove()
        journals.remove(journal)
    return LabelSummary(
        out=out,
        format=fmt,
        total=len(listing.images),
        labelled=labelled,
        boxes=boxes,
        resumed=len(done),
        seconds=time.perf_counter() - start,
        skipped=skipped,
        errors_file=writers.errors_path(out) if skipped else None,
    )


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
        "namer": detector.namer is not None,
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
    """The COCO file's ``info``: the run's model and settings, so the labels say how they were made."""
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


def _advance(state: ImageProgress, skipped: bool, seconds: float) -> ImageProgress:
    return ImageProgress(state.done + 1, state.total, state.skipped + skipped, state.processed + 1, seconds)
