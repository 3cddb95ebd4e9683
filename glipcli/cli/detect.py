"""``glip detect``: the objects a prompt names, in one or more images."""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from glipcli.cli.console import console, err_console, handle_errors, print_selection, print_tuned_note
from glipcli.cli.options import (
    ClassThresholdOption,
    DeviceOption,
    MaxDetectionsOption,
    ModelOption,
    NoNamerOption,
    OneLabelOption,
    QuietOption,
    SizeOption,
    ThreadsOption,
    ThresholdOption,
    parse_class_thresholds,
)
from glipcli.cli.paths import check_writable, exists, write_json
from glipcli.errors import ConfigError, ImageError, PromptError

if TYPE_CHECKING:
    import supervision as sv

_GLOB_CHARS = frozenset("*?[")


def _is_image_arg(arg: str) -> bool:
    """An argument that names an image (or a pattern of them) rather than a prompt."""
    from glipcli.io.images import IMAGE_EXTENSIONS

    if not arg.strip():
        return False
    if exists(arg) or Path(arg).suffix.lower() in IMAGE_EXTENSIONS:
        return True
    return bool(_GLOB_CHARS & set(arg) and glob.glob(arg))


def _split_arguments(args: list[str], prompt_file: Path | None) -> tuple[list[str], str | None]:
    """IMAGE... PROMPT, or IMAGE... with --prompt-file: refuse both and neither."""
    if prompt_file is not None:
        if args and not _is_image_arg(args[-1]):
            raise PromptError(f"give either a PROMPT ({args[-1]!r}) or --prompt-file, not both")
        images, prompt = args, None
    elif len(args) >= 2:
        images, prompt = args[:-1], args[-1]
        if exists(prompt, "file") and _is_image_arg(prompt):
            raise PromptError(f"the last argument {prompt!r} is a file, not a prompt: give PROMPT after the images")
    elif args and _is_image_arg(args[0]):
        raise PromptError("no prompt: give PROMPT after the images (e.g. 'cat. dog') or --prompt-file FILE")
    else:
        images, prompt = [], None
    if not images:
        raise ImageError("no image given: glip detect IMAGE... PROMPT")
    return images, prompt


def _expand_images(args: list[str]) -> list[Path]:
    """Paths as given, quoted glob patterns expanded (sorted); every image's header is checked now."""
    from glipcli.io.images import read_image_size

    paths: list[Path] = []
    for arg in args:
        if not exists(arg) and _GLOB_CHARS & set(arg):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True) if Path(m).is_file())
            if not matches:
                raise ImageError(f"{arg}: no file matches this pattern")
            paths.extend(matches)
        else:
            paths.append(Path(arg))
    for path in paths:
        read_image_size(path)
    return paths


def _annotated_paths(out: str, images: list[Path], several: bool) -> list[Path]:
    """Where each annotated image goes: ``out`` itself, or ``out/<image name>`` for a folder."""
    from glipcli.draw import OUTPUT_FORMATS, check_output_suffix

    target = Path(out)
    as_folder = out.endswith(("/", os.sep)) or exists(target, "dir") or not target.suffix
    if not as_folder:
        if several:
            raise ConfigError(f"--out {out} names one file, but several images are given: give a folder")
        check_output_suffix(target)
        targets = [target]
    else:
        names = [p.name if p.suffix.lower() in OUTPUT_FORMATS else f"{p.stem}.png" for p in images]
        targets = [target / name for name in names]
        if len(set(names)) < len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"two images would both be written to {target / twice}; rename one or run them apart")
    inputs = {p.resolve() for p in images}
    for path in targets:
        if path.resolve() in inputs:
            raise ConfigError(f"--out would overwrite the input image {path}; choose another folder")
        check_writable(path)
    return targets


def _print_detections(
    name: str, size_wh: tuple[int, int], detections: sv.Detections, seconds: float, table: bool
) -> None:
    """A table of one image's detections and a summary line (on stderr when stdout carries JSON)."""
    from rich.table import Table
    from rich.text import Text

    if table and len(detections):
        grid = Table(title=Text(name), title_justify="left", show_edge=False)
        grid.add_column("label")
        grid.add_column("score", justify="right")
        grid.add_column("box (x1, y1, x2, y2)", justify="right")
        for box, score, label in zip(detections.xyxy, detections.confidence, detections.data["class_name"]):
            grid.add_row(Text(str(label)), f"{score:.3f}", ", ".join(f"{v:.1f}" for v in box))
        console.print(grid)
    count = len(detections)
    summary = Text(f"{name}: {count} detection{'s' * (count != 1)} ({size_wh[0]}x{size_wh[1]}, {seconds:.2f} s)")
    (console if table else err_console).print(summary, highlight=False)


@handle_errors
def detect(
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="IMAGE... PROMPT",
            help="Images (paths, or quoted glob patterns like 'imgs/*.jpg'), then the prompt: "
            "classes separated by '.', e.g. 'cat. dog. red car'.",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    size: SizeOption = None,
    no_namer: NoNamerOption = False,
    threshold: ThresholdOption = None,
    max_detections: MaxDetectionsOption = None,
    ground: Annotated[
        list[str] | None,
        typer.Option(
            "--ground", "-g", help="Grounding: PROMPT is a free caption and this phrase of it is a label (repeatable)."
        ),
    ] = None,
    prompt_file: Annotated[
        Path | None,
        typer.Option(
            "--prompt-file", "-p", help="Classes from a file, one per line ('name' or 'name: description'); no PROMPT."
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Annotated image: a .png/.jpg/.webp file, or a folder "
            "(ends in / or has no suffix; needed for several images).",
        ),
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write detections as JSON to this file, or '-' for stdout.")
    ] = None,
    one_label: OneLabelOption = True,
    class_threshold: ClassThresholdOption = None,
    quiet: QuietOption = False,
) -> None:
    """Detect the objects a prompt names, in one or more images.

    Boxes are in original image pixels; scores are GLIP's: sqrt(phrase probability x centerness).

    Several images, or a glob pattern, make --json a list and --out a folder.

    By default each object keeps one label and the threshold is the model's calibrated one; stderr says
    which threshold was used and the JSON records it. --all-labels gives GLIP's raw output. A prompt file
    line may end in '>= 0.6', that class's own threshold (docs/labels.md).

    A bundle written by `glip tune` uses its tuned prompt when PROMPT names exactly the tuned classes
    (see `glip info`), and says on stderr whether it did.

    [bold]Examples[/]

      glip detect img.jpg "stingray. flat and round fish"

      glip detect a.jpg b.jpg "cat. dog" --out annotated/

      glip detect "imgs/*.jpg" "person. bicycle" --threshold 0.3 --json detections.json

      glip detect img.jpg "a man walking a dog on the beach" --ground "man" --ground "dog"

      glip detect img.jpg --prompt-file classes.txt --json -

      glip detect img.jpg "red heart. red circle. blue circle" --class-threshold "red circle=0.6" --out out.png

      glip detect img.jpg "red heart. red circle" --all-labels --threshold 0 --json raw.json

      glip detect img.jpg "cat. dog" --size 480:800 --json fast.json
    """
    from glipcli.api import Detector, result_record, selection_info, to_prompt
    from glipcli.io.images import load_image
    from glipcli.prompt import read_prompt_file

    if ground and prompt_file is not None:
        raise PromptError("--ground needs a caption PROMPT, not --prompt-file")
    image_args, prompt_text = _split_arguments(list(arguments or []), prompt_file)
    prompt = read_prompt_file(prompt_file) if prompt_text is None else to_prompt(prompt_text, ground)
    images = _expand_images(image_args)
    several = len(image_args) > 1 or len(images) > 1
    targets = _annotated_paths(out, images, several) if out is not None else None
    to_stdout = json_out == "-"
    if json_out is not None and not to_stdout:
        check_writable(Path(json_out))

    by_class = parse_class_thresholds(class_threshold)
    detector = Detector.load(model, device=device, threads=threads, size=size, namer=not no_namer)
    prepared = detector.prepare_prompt(prompt)
    thresholds = detector.thresholds(prepared, threshold, by_class)
    settings = selection_info(detector, prepared, thresholds, threshold is None, not one_label)
    if not quiet:
        print_tuned_note(detector, [chunk.caption for chunk in prepared.chunks])
        print_selection(settings, err_console if to_stdout else console)
    records = []
    for i, path in enumerate(images):
        start = time.perf_counter()
        rgb = load_image(path)
        ((_, detections),) = detector.detect_arrays(
            [rgb],
            prepared,
            threshold=threshold,
            class_thresholds=by_class,
            all_labels=not one_label,
            max_detections=max_detections,
        )
        size_wh = (rgb.shape[1], rgb.shape[0])
        if targets is not None:
            from glipcli.draw import annotate, save_image  # supervision's drawing: only for --out

            save_image(targets[i], annotate(rgb, detections.to_supervision()))
        records.append(result_record(str(path), size_wh, prompt_text or prepared.text, detections, settings))
        if not quiet:
            _print_detections(str(path), size_wh, detections, time.perf_counter() - start, table=not to_stdout)
    if json_out is not None:
        document = records if several else records[0]
        if to_stdout:
            sys.stdout.write(json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n")
        else:
            write_json(Path(json_out), document)
