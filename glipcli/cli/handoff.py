"""``glip convert`` and ``glip review``: labels handed to annotation tools and to a person's eyes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glipcli.cli.console import console, handle_errors
from glipcli.cli.options import LabelImagesOption


@handle_errors
def convert(
    labels: Annotated[Path, typer.Argument(metavar="LABELS.json", help="A COCO file, e.g. the output of glip label.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="yolo, voc, labelstudio, cvat, or several: voc,cvat.")],
    images: LabelImagesOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="File (cvat) or folder to write; must not exist.")],
    image_url: Annotated[
        str, typer.Option("--image-url", help="Label Studio: prefix of each task's image URL (then the relative path).")
    ] = "/data/local-files/?d=",
) -> None:
    """Turn a finished COCO output (with its scores) into the formats annotation tools import.

    The labels must describe --images: every file they name is there, with the same size. Nothing is
    overwritten: OUT must not exist, and appears complete or not at all.

    VOC: OUT/Annotations/<path>.xml per image (mirroring the folder tree), ImageSets/Main/default.txt,
    labelmap.txt; whole pixels, scores as a "score" attribute. Label Studio: OUT/tasks.json (predictions with
    each box's score and the model's name) and OUT/config.xml (the labelling config). CVAT for images 1.1: one
    XML, scores as a "score" attribute. YOLO: as glip label writes it. Several formats go into OUT, one name each.

    [bold]Examples[/]

      glip convert labels.json --format voc --images photos/ --out voc/

      glip convert labels.json --format labelstudio,cvat --images photos/ --out handoff/
    """
    from rich.markup import escape

    from glipcli.convert import convert_labels

    summary = convert_labels(labels, fmt, images, out, image_url=image_url)
    for name, target in summary.outputs.items():
        console.print(f"{name}: [bold]{escape(str(target))}[/]", highlight=False)
    console.print(f"{summary.images} images, {summary.boxes} boxes", highlight=False)


@handle_errors
def review(
    labels: Annotated[
        Path, typer.Argument(metavar="LABELS.json", help="A COCO file: glip label's output, or a ground truth.")
    ],
    images: LabelImagesOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML page to write; must not exist.")] = Path(
        "review.html"
    ),
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Skipped files to list (default: LABELS.json.errors.json if there).")
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option("--metrics", help="A glip eval --json file, shown with the run's settings.")
    ] = None,
    thumb: Annotated[int, typer.Option("--thumb", min=16, help="Thumbnail size (long side, pixels).")] = 160,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Threads making thumbnails.")] = 2,
) -> None:
    """Write one self-contained HTML page to check a labelled folder: opens from disk, no server, offline.

    Thumbnails with their boxes, lowest-confidence images first; filters by class and score (kept in the URL's
    # part, so a view can be bookmarked); per-class box counts and score histograms; the files glip label skipped;
    the run's settings (the COCO info). Pages of 60 cards, so 10,000 images open as fast as 100.

    [bold]Examples[/]

      glip review labels.json --images photos/ --out review.html

      glip review val/annotations.json --images val/images --metrics scores.json --out gt.html
    """
    from rich.markup import escape

    from glipcli.review import write_review

    summary = write_review(labels, images, out, errors=errors, metrics=metrics, thumb=thumb, workers=workers)
    console.print(
        f"{summary.images} images, {summary.boxes} boxes, {summary.skipped} skipped -> "
        f"[bold]{escape(str(summary.out))}[/] ({summary.bytes / 1e3:,.0f} kB)",
        highlight=False,
    )
