"""Options several commands share, declared once (typer ``Annotated`` aliases), and their parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glipcli.api import DEFAULT_THRESHOLD
from glipcli.errors import ConfigError

ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Model bundle: a name (see exported/) or a folder path.")
]
DeviceOption = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or tensorrt.")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads per graph.")]
TorchThreadsOption = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for PyTorch.")]
SizeOption = Annotated[
    str | None,
    typer.Option(
        "--size",
        metavar="SHORT[:MAX_LONG]",
        help="Resize images to this shorter side (longer side at most MAX_LONG; default keeps the model's ratio) "
        "instead of the model's size: smaller is faster and finds fewer small objects (docs/speed.md). "
        "Several, comma-separated, run GLIP's multi-scale test; SIZE@LOW-HIGH keeps only that pass's boxes "
        "of sqrt(area) in LOW-HIGH pixels (glip-nano's default: 384,768@0-96,256@64-; docs/labels.md).",
        show_default=False,
    ),
]
NoNamerOption = Annotated[
    bool,
    typer.Option(
        "--no-namer",
        help="Leave out the model's region namer (glip-nano has one): GLIP's scores alone. "
        "The thresholds stay those calibrated with it: set --threshold too.",
    ),
]
CompactOption = Annotated[
    bool,
    typer.Option(
        "--compact",
        help="Round the weights to fp16 (the text encoder's matrices to int8 rows) before exporting: "
        "stored at 1-2 bytes a value, graphs still fp32. Changes the model slightly: check it with glip eval.",
    ),
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle at --out.")]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        "-t",
        min=0.0,
        max=1.0,
        help="Keep detections scoring at least this (0 = all). Default: the model's calibrated threshold "
        f"(glip calibrate), else {DEFAULT_THRESHOLD}.",
        show_default=False,
    ),
]
ClassThresholdOption = Annotated[
    list[str] | None,
    typer.Option(
        "--class-threshold",
        "-T",
        metavar="'NAME=VALUE'",
        help="A threshold for one class, e.g. 'red circle=0.6' (repeatable; overrides --threshold and a prompt "
        "file's '>= 0.6' for that class).",
        show_default=False,
    ),
]
MaxDetectionsOption = Annotated[
    int | None,
    typer.Option("--max-detections", min=1, help="At most this many detections per image (default: 100)."),
]
OneLabelOption = Annotated[
    bool,
    typer.Option(
        "--one-label/--all-labels",
        help="--one-label (default): each object keeps its best-scoring label, boxes of other labels over it "
        "(IoU >= 0.5) and fragments inside a better box of its label go. --all-labels: GLIP's raw output, every "
        "label's boxes (with --threshold 0 --max-detections 100, the official output).",
    ),
]
WorkersOption = Annotated[
    int, typer.Option("--workers", "-w", min=1, help="Threads decoding images ahead of the model.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
NoProgressOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
GroundTruthImagesOption = Annotated[
    Path | None,
    typer.Option(
        "--images",
        "-i",
        help="Folder the ground truth's file names are relative to (default: the 'images' folder beside GT.json).",
    ),
]
DataImagesOption = Annotated[
    Path | None,
    typer.Option("--images", "-i", help="Folder --data's file names are relative to (default: images/ beside it)."),
]
LabelImagesOption = Annotated[
    Path, typer.Option("--images", "-i", help="The folder the labels' file names are relative to.")
]


def parse_class_thresholds(values: list[str] | None) -> dict[str, float]:
    """``--class-threshold 'red circle=0.6'`` options as {class name: value}; range and names are
    checked against the prompt by the library."""
    result: dict[str, float] = {}
    for value in values or []:
        name, sep, number = value.rpartition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--class-threshold {value!r}: expected 'NAME=VALUE', e.g. 'red circle=0.6'")
        try:
            result[name.strip()] = float(number)
        except ValueError:
            raise ConfigError(f"--class-threshold {value!r}: {number.strip()!r} is not a number") from None
    return result
