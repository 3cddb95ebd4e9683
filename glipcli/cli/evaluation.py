"""``glip eval`` and ``glip calibrate``: a model against a COCO ground truth, scored or calibrated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from glipcli.cli.console import ProgressDisplay, console, err_console, handle_errors, print_skipped, print_tuned_note
from glipcli.cli.options import (
    DeviceOption,
    GroundTruthImagesOption,
    ModelOption,
    NoNamerOption,
    QuietOption,
    SizeOption,
    ThreadsOption,
    WorkersOption,
)
from glipcli.cli.paths import check_writable, write_json
from glipcli.errors import DataError
from glipcli.io.coco import images_folder


@handle_errors
def eval_(
    ground_truth: Annotated[
        Path, typer.Argument(metavar="GT.json", help="COCO ground truth (images, annotations, categories).")
    ],
    images: GroundTruthImagesOption = None,
    prompt_file: Annotated[
        Path | None,
        typer.Option(
            "--prompt-file",
            "-p",
            help="Classes to prompt with, each the name of a ground-truth category, optionally with "
            "': description'. Default: the category names.",
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", "-t", min=0.0, max=1.0, help="Score threshold (official: 0).")
    ] = 0.0,
    max_detections: Annotated[
        int, typer.Option("--max-detections", min=1, help="At most this many detections per image.")
    ] = 100,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    size: SizeOption = None,
    no_namer: NoNamerOption = False,
    workers: WorkersOption = 2,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the numbers to this JSON file.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Score a model on a COCO ground truth: mAP, mAP@0.5, mAP@0.75 and AP per class.

    The prompt is the categories' names (cleaned as GLIP does: "bow_(weapon)" -> "bow"), or
    --prompt-file, whose classes match categories by name in any order; descriptions compare
    prompts ("stingray" vs "stingray: flat and round fish"). Categories the file leaves out
    are left out of the evaluation. Boxes are converted with GLIP's +1 (w = x2 - x1 + 1).

    Images of the ground truth that are missing or unreadable are skipped, with their
    annotations, and reported. A bundle from `glip tune` uses its tuned prompt when the classes
    are exactly the tuned ones; stderr says whether it did.

    [bold]Exit codes[/]: 0 all images evaluated; 2 evaluated, but some images were skipped;
    1 no result (bad ground truth, prompt file or model).

    [bold]Examples[/]

      glip eval val/annotations.json --images val/images

      glip eval val/annotations.json --prompt-file described.txt --json scores.json

      glip eval val/annotations.json --size 320 (the speed/accuracy trade of a smaller input)
    """
    from glipcli.api import Detector
    from glipcli.evaluation import evaluate_folder
    from glipcli.prompt import read_prompt_file

    prompt = read_prompt_file(prompt_file) if prompt_file is not None else None
    if json_out is not None:
        check_writable(json_out)
    detector = Detector.load(model, device=device, threads=threads, size=size, namer=not no_namer)
    with ProgressDisplay("evaluating", quiet) as display:
        report = evaluate_folder(
            ground_truth,
            images_folder(ground_truth, images),
            detector=detector,
            prompt=prompt,
            threshold=threshold,
            max_detections=max_detections,
            workers=workers,
            progress=display.update,
        )
    if json_out is not None:
        write_json(json_out, report.to_dict())
    if not quiet:
        _print_metrics(report)
        print_tuned_note(detector, report.captions)
    raise typer.Exit(report.exit_code)


def _print_metrics(report: Any) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    metrics = report.metrics
    table = Table("category", "AP", "AP50", title="AP per class", title_justify="left", show_edge=False)
    for name, ap in metrics.per_class.items():
        table.add_row(Text(name), f"{ap:.4f}", f"{metrics.per_class50.get(name, float('nan')):.4f}")
    console.print(table)
    console.print(
        f"[bold]mAP[/] {metrics.map:.4f}   [bold]mAP@0.5[/] {metrics.map50:.4f}   [bold]mAP@0.75[/] {metrics.map75:.4f}"
        f"   ({metrics.images} images at size {report.input_size}, {metrics.detections} detections, "
        f"{report.seconds:.1f} s)",
        highlight=False,
    )
    if report.unused:
        names = ", ".join(escape(n) for n in report.unused[:5]) + (", ..." if len(report.unused) > 5 else "")
        err_console.print(f"[yellow]not evaluated[/]: {len(report.unused)} categories not in the prompt file ({names})")
    if report.skipped:
        print_skipped(report.skipped, None)


@handle_errors
def calibrate(
    ground_truths: Annotated[
        list[Path],
        typer.Argument(
            metavar="GT.json...",
            help="COCO validation sets (images, annotations, categories); several are pooled, each prompted "
            "with its own categories.",
        ),
    ],
    images: GroundTruthImagesOption = None,
    prompt_file: Annotated[
        Path | None,
        typer.Option("--prompt-file", "-p", help="Classes to prompt with, as for glip eval (default: the categories)."),
    ] = None,
    new_names: Annotated[
        list[Path] | None,
        typer.Option(
            "--new-names",
            metavar="GT.json",
            help="A validation set of classes the model was not trained on (repeatable): chooses a second "
            "threshold, used for every class outside the main sets' classes.",
        ),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    size: SizeOption = None,
    no_namer: NoNamerOption = False,
    workers: WorkersOption = 2,
    write: Annotated[
        bool, typer.Option("--write/--dry-run", help="Record the threshold in the bundle's manifest (default).")
    ] = True,
    quiet: QuietOption = False,
) -> None:
    """Choose a model's default score threshold on a validation set and record it in its bundle.

    A box is right when its label names the object's category and IoU >= 0.5 (each object matched once). On the
    one-label output (the default of detect and label) the threshold from 0.05 to 0.95 that maximises F1 of right
    boxes is written into the bundle's manifest.json under "calibration"; detect and label then use it when no
    --threshold is given. The graphs are untouched, so the bundle still verifies. Use images the model was not
    trained on (docs/labels.md). Give several sets to choose one threshold for the kinds of prompt they stand for.

    A model scores the classes it was trained on higher than new ones. --new-names sets (of classes it was not
    trained on) choose a second threshold; the manifest then lists the main sets' classes, and any other class
    of a prompt gets the second threshold.

    The threshold holds for the input size it was chosen at, so that size is recorded with it and becomes the
    bundle's default size (--size to choose another, e.g. a multi-scale test: glip eval --size measures it first).

    [bold]Examples[/]

      glip calibrate val/annotations.json --model exported/glip-nano

      glip calibrate val-known/annotations.json --new-names val-new/annotations.json --model exported/glip-nano

      glip calibrate val/annotations.json --model exported/my-model --dry-run

      glip calibrate val/annotations.json --size 384,768@0-96,256@64- --model exported/my-model
    """
    from glipcli.api import Detector
    from glipcli.calibration import (
        Calibration,
        check_new_names,
        choose_threshold,
        load_scenes,
        prompt_names,
        write_calibration,
    )
    from glipcli.prompt import read_prompt_file

    new_names = new_names or []
    if images is not None and len(ground_truths) + len(new_names) > 1:
        raise DataError("--images applies to one GT.json: give each set with its images/ folder beside it")
    if prompt_file is not None and new_names:
        raise DataError("--prompt-file and --new-names do not go together: each set is prompted with its categories")
    prompt = read_prompt_file(prompt_file) if prompt_file is not None else None
    known = [name for ground_truth in ground_truths for name in prompt_names(ground_truth, prompt)]
    check_new_names(known, {str(ground_truth): prompt_names(ground_truth) for ground_truth in new_names})
    detector = Detector.load(model, device=device, threads=threads, size=size, namer=not no_namer)

    def calibrated(sets: list[Path]) -> Calibration:
        scenes = []
        for ground_truth in sets:
            with ProgressDisplay(f"calibrating on {ground_truth.parent.name}", quiet) as display:
                folder = images_folder(ground_truth, images)
                scenes += load_scenes(
                    ground_truth, folder, detector, prompt=prompt, workers=workers, progress=display.update
                )
        return choose_threshold(scenes, sets, detector.size)

    result = calibrated(ground_truths)
    other = calibrated(new_names) if new_names else None
    if write:
        write_calibration(detector.bundle.path, result, (sorted(set(known)), other) if other else None)
    if not quiet:
        from rich.markup import escape

        where = f"-> {escape(str(detector.bundle.path / 'manifest.json'))}" if write else "(dry run: not written)"
        for what, found in (("threshold", result), ("new names' threshold", other)):
            if found is not None:
                console.print(
                    f"{what} [bold]{found.threshold:g}[/]: F1 {found.f1:.3f}, precision {found.precision:.3f}, "
                    f"recall {found.recall:.3f} on {found.images} images, {found.objects} objects {where}",
                    highlight=False,
                )
