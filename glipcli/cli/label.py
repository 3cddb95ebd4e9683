"""``glip label``: a folder of images -> pseudo-labels (glipcli.labelling does the work)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from glipcli.cli.console import (
    ProgressDisplay,
    console,
    err_console,
    handle_errors,
    print_selection,
    print_skipped,
    print_tuned_note,
)
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
    WorkersOption,
    parse_class_thresholds,
)
from glipcli.cli.paths import check_writable
from glipcli.errors import PromptError


def _read_prompt(prompt: str | None, prompt_file: Path | None) -> Any:
    from glipcli.prompt import parse_prompt, read_prompt_file

    if (prompt is None) == (prompt_file is None):
        raise PromptError("give the classes with exactly one of --prompt 'cat. dog' and --prompt-file FILE")
    return read_prompt_file(prompt_file) if prompt_file is not None else parse_prompt(prompt)


@handle_errors
def label(
    folder: Annotated[
        str,
        typer.Argument(
            metavar="FOLDER",
            help="Folder of images, walked recursively; with --engine ray also a URL (s3://..., file://...).",
            show_default=False,
        ),
    ],
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-P", help="Classes separated by '.', e.g. 'cat. dog. red car'.")
    ] = None,
    prompt_file: Annotated[
        Path | None,
        typer.Option("--prompt-file", "-p", help="Classes from a file, one per line ('name' or 'name: description')."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output: a .json file for COCO (default labels.json), a .xml file for CVAT, a folder for the others "
            "and for several formats at once (default labels/).",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="coco, yolo, voc, labelstudio, cvat, or several: coco,voc,cvat.")
    ] = "coco",
    threshold: ThresholdOption = None,
    class_threshold: ClassThresholdOption = None,
    max_detections: MaxDetectionsOption = None,
    one_label: OneLabelOption = True,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    size: SizeOption = None,
    no_namer: NoNamerOption = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", "-b", min=1, help="Images per backbone run (> 1 pads images to the largest: scores move)."
        ),
    ] = 1,
    workers: WorkersOption = 2,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its journal (same settings).")
    ] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="local (this process) or ray (a pool of Ray workers).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster to join: auto, ray://host:10001, ... (default: a new local Ray)."),
    ] = None,
    num_workers: Annotated[
        int, typer.Option("--num-workers", min=1, help="Ray workers, each holding one model (--engine ray).")
    ] = 1,
    gpus_per_worker: Annotated[
        float, typer.Option("--gpus-per-worker", min=0.0, help="GPUs each Ray worker reserves, e.g. 1 or 0.5.")
    ] = 0.0,
    quiet: QuietOption = False,
) -> None:
    """Auto-annotate a folder of images: COCO or YOLO pseudo-labels that no crash can lose.

    Every image under FOLDER (recursive, sorted, hidden files ignored) gets the id of its place in that listing.

    COCO: file names relative to FOLDER, bbox \\[x, y, w, h] in pixels with GLIP's w = x2 - x1 + 1, scores,
    categories 1.. in prompt order (with descriptions), info (model, sha256s, prompt, threshold).

    YOLO: one .txt per image mirroring the folder tree, plus classes.txt and data.yaml. VOC, Label Studio, CVAT:
    see `glip convert --help`. Several formats (--format coco,voc) go into the folder OUT, one name each.

    [bold]Crash safety[/]: each finished image is journaled (fsynced) in OUT.journal. After a crash, Ctrl-C or
    kill, rerun the same command with --resume: done images are skipped and the result equals an uninterrupted
    run. The output is replaced atomically at the end, then the journal is removed. A second run writing the
    same output at the same time is refused.

    [bold]Labels a person keeps[/]: by default each object keeps its best label (fragments and other labels'
    boxes over it go) and the threshold is the model's calibrated one (`glip calibrate`; 0.4 for models without
    one); info records which. --all-labels writes GLIP's raw output. Per class: --class-threshold 'red circle=0.6'
    or a prompt file line ending in '>= 0.6'. The selection applies when the output is written: the journal keeps
    GLIP's output, so a run resumed with or without --all-labels is consistent. See docs/labels.md.

    [bold]Tuned prompts[/] (`glip tune`) are used when the classes are exactly the tuned ones; stderr says so.

    [bold]Bad files[/] (empty, truncated, not an image, too large, unreadable, broken links, link loops) are
    skipped and listed with their reason in the summary and in OUT.errors.json.

    [bold]Exit codes[/]: 0 all images labelled; 2 finished, but some files were skipped (see OUT.errors.json);
    1 nothing written (bad prompt, model, folder or output, or an earlier run's journal in the way).

    [bold]Ray[/] (pip install "glipcli\\[ray]"): --engine ray decodes in Ray tasks and runs --num-workers models
    in Ray actors (--threads CPUs each, default 1), which journal into OUT.journal.d/. Same output as local; either
    engine resumes the other's run. On a multi-node cluster FOLDER, the model and OUT must be on shared storage.

    [bold]Examples[/]

      glip label photos/ --prompt "person. bicycle. dog" --out photos.json

      glip label photos/ --prompt-file classes.txt --threshold 0.3 --workers 4

      glip label photos/ --prompt-file classes.txt --format yolo --out dataset/labels/

      glip label photos/ --prompt-file classes.txt --out photos.json --resume

      glip label photos/ --prompt-file classes.txt --threshold 0.5 --class-threshold "bicycle=0.3"

      glip label photos/ --prompt-file classes.txt --all-labels --threshold 0 --out raw.json

      glip label photos/ --prompt-file classes.txt --engine ray --address auto --num-workers 8 --gpus-per-worker 1
    """
    from glipcli.api import Detector, selection_info
    from glipcli.convert import default_output
    from glipcli.labelling.folder import check_arguments, label_folder
    from glipcli.labelling.journals import journal_path

    if engine == "ray":  # Ray Data's log lines would cut into the progress bar; its errors still come as exceptions
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "CRITICAL")
    # bad settings and a missing Ray are one line each, before the model loads
    formats = check_arguments(fmt, engine, workers, num_workers, gpus_per_worker)
    classes = _read_prompt(prompt, prompt_file)
    out = out or default_output(formats)
    check_writable(journal_path(out))
    # with Ray the workers run the model; here it only tokenises the prompt and names the graphs
    detector = Detector.load(
        model, device="cpu" if engine == "ray" else device, threads=threads, size=size, namer=not no_namer
    )
    by_class = parse_class_thresholds(class_threshold)
    prepared = detector.prepare_prompt(classes)
    thresholds = detector.thresholds(prepared, threshold, by_class)  # a bad class name stops here, before any work
    if not quiet:
        print_tuned_note(detector, [chunk.caption for chunk in prepared.chunks])
    try:
        with ProgressDisplay("labelling", quiet) as display:
            summary = label_folder(
                folder,
                prepared,
                out,
                detector=detector,
                fmt=fmt,
                threshold=threshold,
                class_thresholds=by_class,
                all_labels=not one_label,
                max_detections=max_detections,
                batch_size=batch_size,
                workers=workers,
                resume=resume,
                progress=display.update,
                engine=engine,
                address=address,
                num_workers=num_workers,
                gpus_per_worker=gpus_per_worker,
                device=device,
                threads=threads,
            )
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]: rerun with --resume to continue where it stopped")
        raise typer.Exit(130) from None
    if not quiet:
        from rich.markup import escape

        resumed = f", {summary.resumed} from the journal" if summary.resumed else ""
        console.print(
            f"labelled {summary.labelled} of {summary.total} images{resumed}: {summary.boxes} boxes "
            f"in {summary.seconds:.1f} s -> [bold]{escape(str(summary.out))}[/]",
            highlight=False,
        )
        print_selection(selection_info(detector, prepared, thresholds, threshold is None, not one_label), console)
        if summary.skipped:
            print_skipped(summary.skipped, summary.errors_file)
    raise typer.Exit(summary.exit_code)
