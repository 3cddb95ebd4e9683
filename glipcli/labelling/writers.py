"""The files a ``glip label`` run ends in, written from its journal records.

The output streams from the records (memory does not grow with the folder) into temp files that
replace the targets only when complete. COCO is written here, two passes over the records; the
other formats go through :func:`glipcli.convert.write_format`, as ``glip convert`` writes them.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from glipcli.convert import write_format
from glipcli.errors import DataError
from glipcli.io.coco import coco_annotations, coco_categories, coco_image, write_coco_atomic, write_json_atomic
from glipcli.io.labelled import from_record
from glipcli.labelling.records import Records, labelled
from glipcli.progress import Skipped
from glipcli.prompt import Prompt


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.json")


def write_outputs(
    targets: dict[str, Path],
    records: Records,
    prompt: Prompt,
    class_names: Sequence[str],
    model: str,
    info: dict[str, Any],
) -> None:
    """Every requested format: COCO with ``info`` (the run's settings), the others by ``glip convert``'s writers."""
    for name, target in targets.items():
        if name == "coco":
            _write_coco(target, records, prompt, info)
        else:
            write_format(name, target, lambda: map(from_record, labelled(records)), class_names, model)


def write_errors(out: Path, skipped: list[Skipped]) -> None:
    """``<out>.errors.json`` lists the skipped files; a stale one from an earlier run is removed."""
    path = errors_path(out)
    if skipped:
        write_json_atomic(path, [{"file": item.file, "reason": item.reason} for item in skipped])
    else:
        path.unlink(missing_ok=True)


@contextmanager
def journal_kept_on_failure(out: Path, journal: Path) -> Iterator[None]:
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


def _write_coco(out: Path, records: Records, prompt: Prompt, info: dict[str, Any]) -> None:
    """Two streaming passes over the records (images, then annotations) into one atomic file."""
    categories = coco_categories(prompt.names, [label.description for label in prompt.labels])
    images = (coco_image(r["id"], r["file_name"], r["width"], r["height"]) for r in labelled(records))
    write_coco_atomic(out, info, images, _annotations(records), categories)


def _annotations(records: Records) -> Iterator[dict[str, Any]]:
    next_id = 1
    for record in labelled(records):
        boxes = np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4)
        annotations = coco_annotations(record["id"], boxes, record["scores"], record["labels"], first_id=next_id)
        next_id += len(annotations)
        yield from annotations
