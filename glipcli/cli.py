"""The ``glip`` command: a thin Typer layer over the Python API.

Commands parse options, call the library and print with rich. Errors a user can cause
(GlipError) become one line on stderr and a non-zero exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from glipcli import __version__
from glipcli.api import DEFAULT_THRESHOLD
from glipcli.errors import ConfigError, GlipError, ImageError, PromptError
from glipcli.extras import require_extra
from glipcli.train.recipe import NANO_PRETRAIN

if TYPE_CHECKING:
    import supervision as sv

app = typer.Typer(
    name="glip",
    help="Open-vocabulary detection and auto-annotation with GLIP, on ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


# Options several commands share, declared once.
ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Model bundle: a name (see exported/) or a folder path.")
]
DeviceOption = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or tensorrt.")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads per graph.")]
SizeOption = Annotated[
    str | None,
    typer.Option(
        "--size",
        metavar="SHORT[:MAX_LONG]",
        help="Resize images to this shorter side (longer side at most MAX_LONG; default keeps the model's ratio) "
        "instead of the model's size: smaller is faster and finds fewer small objects (docs/speed.md).",
        show_default=False,
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


def _class_thresholds(values: list[str] | None) -> dict[str, float]:
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


def _print_selection(settings: dict[str, Any], out: Console) -> None:
    """One line: the threshold used and where it came from, and the selection (on stderr when stdout carries JSON)."""
    from rich.markup import escape

    source = "--threshold" if settings["threshold_source"] == "given" else settings["threshold_source"]
    classes = "".join(f", {escape(name)} {value:g}" for name, value in settings["class_thresholds"].items())
    labels = "one label per object" if settings["one_label"] else "all labels (GLIP's output)"
    out.print(
        f"threshold {settings['threshold']:g} ({escape(source)}){classes}; {labels}", highlight=False, soft_wrap=True
    )


def handle_errors(func: F) -> F:
    """Turn GlipError into 'error: <message>' on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GlipError as exc:
            from rich.markup import escape  # messages hold file names and commands, e.g. "glipcli[ray]"

            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"glipcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Open-vocabulary detection and auto-annotation with GLIP, on ONNX Runtime."""


@app.command()
@handle_errors
def export(
    config: Annotated[
        str,
        typer.Option(
            "--config",
            "-c",
            help="A preset (glip-t-a, glip-t-b, glip-t-c, glip-t, glip-l, glip-nano) or an official GLIP YAML config.",
        ),
    ] = "glip-t",
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint: a path (.pth/.pt/.bin/.safetensors) or hf://OWNER/REPO/FILE. "
            "Default: the preset's official checkpoint from hf://GLIPModel/GLIP.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Bundle folder to write. Default: exported/<name>[-fp16|-int8].")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 graphs for GPUs (fragile parts stay fp32).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Dynamically quantised int8 graphs for CPUs.")] = False,
    bert_config: Annotated[
        Path | None, typer.Option("--bert-config", help="BERT config JSON for YAML configs whose LANG_DIM is not 768.")
    ] = None,
    vocab: Annotated[
        Path | None, typer.Option("--vocab", help="WordPiece vocab.txt (default: bert-base-uncased).")
    ] = None,
    deform: Annotated[
        str,
        typer.Option("--deform", help="Deformable conv in the graph: grid_sample (default) or deform_conv."),
    ] = "grid_sample",
    name: Annotated[str | None, typer.Option("--name", help="Model name recorded in the bundle.")] = None,
    compact: CompactOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle at --out.")] = False,
) -> None:
    """Turn a GLIP checkpoint into a self-verified ONNX bundle (text, backbone, fused head).

    [bold]Examples[/]

      glip export --config glip-t --fp16

      glip export --config glip-t --weights ~/glip_tiny_model_o365_goldg_cc_sbu.pth --out exported/glip-t

      glip export --config configs/glip_Swin_T_O365_GoldG.yaml --weights hf://GLIPModel/GLIP/glip_tiny_model_o365_goldg.pth
    """
    require_extra("export", "export")
    from glipcli.export.weights import default_weights, resolve_weights
    from glipcli.runtime.bundle import default_export_dir

    if fp16 and int8:
        raise GlipError("choose one of --fp16 and --int8")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    checkpoint = resolve_weights(weights or default_weights(config))
    # imports torch (seconds), so after the download: an offline export fails at once
    from glipcli.export.exporter import build_from_checkpoint, export_bundle

    console.print(f"loading [bold]{checkpoint}[/] with config [bold]{config}[/]")
    model, source = build_from_checkpoint(config, checkpoint, str(bert_config) if bert_config else None)
    if compact:
        source = _round_for_export(model, source)
    name = name or model.cfg.name
    target = out or default_export_dir() / (name if precision == "fp32" else f"{name}-{precision}")
    result = export_bundle(
        model,
        target,
        name=name,
        source=source,
        precision=precision,
        vocab=vocab,
        deform=deform,
        overwrite=overwrite,
        log=lambda msg: console.print(f"  {msg}"),
    )
    parity = result.manifest["parity"][precision]
    size = sum(p.stat().st_size for p in result.path.iterdir()) / 1e6
    if parity.get("verified"):
        errors = ", ".join(f"{k} {v:.1e}" for k, v in parity["max_error"].items())
        console.print(f"[green]verified[/] {precision} against PyTorch: {errors}")
    else:
        console.print(f"[yellow]not verified here[/]: {parity['reason']}")
    console.print(f"wrote [bold]{result.path}[/] ({size:.0f} MB) in {result.seconds:.0f} s")


def _round_for_export(model: Any, source: dict[str, Any]) -> dict[str, Any]:
    """Apply --compact to ``model`` in place; returns the provenance that says so."""
    from glipcli.model.compact import round_weights

    round_weights(model)
    return {**source, "rounded": "fp16 weights, int8-row text encoder matrices (glip export --compact)"}


# ---------------------------------------------------------------------------------------------
# glip detect
# ---------------------------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[")


def _exists(arg: str | Path, kind: str = "any") -> bool:
    """Whether ``arg`` names a file, folder or anything; False for text no file system takes as a name."""
    path = Path(arg)
    try:
        return {"file": path.is_file, "dir": path.is_dir, "any": path.exists}[kind]()
    except (OSError, ValueError):  # e.g. a prompt longer than the longest file name
        return False


def _is_image_arg(arg: str) -> bool:
    """An argument that names an image (or a pattern of them) rather than a prompt."""
    from glipcli.io.images import IMAGE_EXTENSIONS

    if not arg.strip():
        return False
    if _exists(arg) or Path(arg).suffix.lower() in IMAGE_EXTENSIONS:
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
        if _exists(prompt, "file") and _is_image_arg(prompt):
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
        if not _exists(arg) and _GLOB_CHARS & set(arg):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True) if Path(m).is_file())
            if not matches:
                raise ImageError(f"{arg}: no file matches this pattern")
            paths.extend(matches)
        else:
            paths.append(Path(arg))
    for path in paths:
        read_image_size(path)
    return paths


def _check_writable(path: Path) -> None:
    """Fail before any work when ``path`` could not be created (not a folder, no permission)."""
    if _exists(path, "dir"):
        raise ConfigError(f"{path} is a folder; give a file name")
    parent = path.parent
    while not _exists(parent) and parent != parent.parent:
        parent = parent.parent
    if not _exists(parent, "dir") or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {parent} is not a writable folder")


def _annotated_paths(out: str, images: list[Path], several: bool) -> list[Path]:
    """Where each annotated image goes: ``out`` itself, or ``out/<image name>`` for a folder."""
    from glipcli.draw import OUTPUT_FORMATS, check_output_suffix

    target = Path(out)
    as_folder = out.endswith(("/", os.sep)) or _exists(target, "dir") or not target.suffix
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
        _check_writable(path)
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


def _tuned_note(detector: Any, captions: list[str]) -> None:
    """Say on stderr whether the model's tuned prompts apply to a prompt's chunk ``captions``
    (stdout may carry JSON)."""
    from rich.markup import escape

    tuned = detector.tuned_captions
    if not tuned:
        return
    used = [caption for caption in captions if caption in tuned]
    if used:
        share = f" ({len(used)} of {len(captions)} chunks)" if len(used) < len(captions) else ""
        err_console.print(f"using tuned prompt {escape(repr(used[0]))}{share}", highlight=False, soft_wrap=True)
    else:
        known = ", ".join(repr(c) for c in sorted(tuned)[:3]) + (", ..." if len(tuned) > 3 else "")
        err_console.print(
            f"[yellow]note[/]: this model's tuned prompts ({escape(known)}) do not match this prompt: "
            "the untuned text encoder is used",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
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
    from glipcli.io.coco import write_json_atomic
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
        _check_writable(Path(json_out))

    by_class = _class_thresholds(class_threshold)
    detector = Detector.load(model, device=device, threads=threads, size=size)
    prepared = detector.prepare_prompt(prompt)
    thresholds = detector.thresholds(prepared, threshold, by_class)
    settings = selection_info(detector, prepared, thresholds, threshold is None, not one_label)
    if not quiet:
        _tuned_note(detector, [chunk.caption for chunk in prepared.chunks])
        _print_selection(settings, err_console if to_stdout else console)
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
            try:
                write_json_atomic(Path(json_out), document)
            except OSError as exc:
                raise ConfigError(f"cannot write {json_out}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# glip info
# ---------------------------------------------------------------------------------------------


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


_SCORE_AGGREGATIONS = {
    "MEAN": "mean of its tokens' probabilities (GLIP's MEAN)",
    "MAX": "highest of its tokens' probabilities (GLIP's MAX)",
    "GEOMEAN": "geometric mean of its words' probabilities (GEOMEAN)",
}


def _parity_line(figures: dict[str, Any]) -> str:
    """Rich markup: the export-time parity figures of one precision."""
    from rich.markup import escape

    if not figures.get("verified"):
        return f"not verified: {escape(str(figures.get('reason', 'no figures recorded')))}"
    errors = ", ".join(f"{k} {v:.1e}" for k, v in figures.get("max_error", {}).items())
    sizes = ", ".join("x".join(str(v) for v in hw) for hw in figures.get("image_sizes", []))
    verdict = "ok" if figures.get("ok") else "[red]over tolerance[/]"
    return f"{verdict}: max error {escape(errors)} at {sizes} on {escape(str(figures.get('provider', '?')))}"


@app.command()
@handle_errors
def info(
    model: Annotated[
        str | None, typer.Argument(help="Model bundle: a name (see exported/) or a folder path. Default: glip-nano.")
    ] = None,
) -> None:
    """Describe a model bundle: source checkpoint, precision, export parity, graphs and tuned prompts.

    The bundle's files are checked against their sha256 on the way.

    [bold]Examples[/]

      glip info

      glip info exported/glip-t-fp16
    """
    from rich.markup import escape
    from rich.table import Table

    from glipcli.runtime.bundle import load_bundle, resolve_model

    bundle = load_bundle(resolve_model(model))
    manifest, cfg = bundle.manifest, bundle.config
    source = manifest.get("source", {})
    rows = [
        ("name", bundle.name),
        ("path", str(bundle.path)),
        ("precision", bundle.precision),
        ("source", f"{source.get('checkpoint', '?')} (sha256 {str(source.get('sha256', '?'))[:12]})"),
        ("created", f"{manifest.get('created', '?')} with glipcli {manifest.get('glipcli_version', '?')}"),
        ("architecture", f"{cfg.name}: Swin {cfg.swin.embed_dim}x{list(cfg.swin.depths)}, text {cfg.language.dim}-d"),
        ("input", f"short side {cfg.input.min_size}, long side <= {cfg.input.max_size}"),
        ("max query", f"{cfg.language.max_query_len} tokens"),
        ("phrase score", _SCORE_AGGREGATIONS.get(cfg.postprocess.score_agg, cfg.postprocess.score_agg)),
    ]
    rows += [(f"parity {name}", _parity_line(figures)) for name, figures in manifest.get("parity", {}).items()]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in rows:
        summary.add_row(key, value if key.startswith("parity") else escape(value))
    console.print(summary)

    graphs = Table("graph", "file", "size", "sha256", title="graphs", title_justify="left", show_edge=False)
    for graph, entry in manifest["graphs"].items():
        graphs.add_row(graph, escape(entry["file"]), _megabytes(bundle.graph_path(graph)), entry["sha256"][:12])
    graphs.add_row("tokenizer", escape(manifest["tokenizer"]["file"]), _megabytes(bundle.tokenizer_path), "")
    console.print(graphs)
    prompts = bundle.prompts
    if prompts:
        console.print(
            f"[bold]tuned prompts[/] ({len(prompts)}), used when a prompt's caption is exactly one of these "
            "(any other prompt runs the untuned text encoder):"
        )
        for entry in prompts.values():
            how = ", ".join(f"{k} {entry[k]}" for k in ("data", "images", "shots", "steps") if entry.get(k) is not None)
            console.print(
                f"  {escape(repr(entry.get('caption', '')))}" + (f"  ({escape(how)})" if how else ""), highlight=False
            )
    else:
        console.print("[bold]tuned prompts[/]: none")


# ---------------------------------------------------------------------------------------------
# glip label and glip eval
# ---------------------------------------------------------------------------------------------


class _ProgressDisplay:
    """A rich progress bar on stderr (images done/total, images/s, ETA, skipped) while on a terminal.

    It starts with the first update, so errors found before any work print alone.
    """

    def __init__(self, description: str, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = None
        self._started = False
        if not quiet and err_console.is_terminal:
            self._progress = Progress(
                TextColumn(description),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} img/s  ETA {task.fields[eta]}  skipped {task.fields[skipped]}"),
                console=err_console,
                transient=True,
            )
            self._task = self._progress.add_task(description, total=None, rate="-", eta="-", skipped=0)

    def __enter__(self) -> _ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None and self._started:
            self._progress.stop()

    def update(self, state: Any) -> None:
        if self._progress is None:
            return
        if not self._started:
            self._progress.start()
            self._started = True
        eta = state.eta_seconds
        self._progress.update(
            self._task,
            completed=state.done,
            total=state.total,
            rate=f"{state.images_per_second:.1f}" if state.processed else "-",
            eta=time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else "-",
            skipped=state.skipped,
        )


def _print_skipped(groups: dict[str, list[Any]], errors_file: Path | None) -> None:
    """Skipped files grouped by kind of problem, a few names each; the full list is in errors_file."""
    from rich.markup import escape

    total = sum(len(items) for items in groups.values())
    where = f" (all listed in {escape(str(errors_file))})" if errors_file else ""
    err_console.print(f"[yellow]skipped {total} file{'s' * (total != 1)}[/]{where}:", highlight=False)
    for kind, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        names = ", ".join(escape(item.file) for item in items[:3]) + (", ..." if len(items) > 3 else "")
        err_console.print(f"  {escape(kind)}: {len(items)} ({names})", highlight=False)


def _read_prompt(prompt: str | None, prompt_file: Path | None) -> Any:
    from glipcli.prompt import parse_prompt, read_prompt_file

    if (prompt is None) == (prompt_file is None):
        raise PromptError("give the classes with exactly one of --prompt 'cat. dog' and --prompt-file FILE")
    return read_prompt_file(prompt_file) if prompt_file is not None else parse_prompt(prompt)


@app.command()
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
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", "-b", min=1, help="Images per backbone run (> 1 pads images to the largest: scores move)."
        ),
    ] = 1,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Threads decoding images ahead of the model.")
    ] = 2,
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
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
    from glipcli.convert import default_output, parse_formats
    from glipcli.labelling.folder import ENGINES, label_folder
    from glipcli.labelling.journals import journal_path
    from glipcli.progress import group_by_kind

    formats = parse_formats(fmt)
    if engine not in ENGINES:
        raise ConfigError(f"unknown --engine {engine!r}: use one of {', '.join(ENGINES)}")
    classes = _read_prompt(prompt, prompt_file)
    out = out or default_output(formats)
    _check_writable(journal_path(out))
    if engine == "ray":
        from glipcli.labelling.ray_runner import import_ray

        # Ray Data's log lines would cut into the progress bar; its errors still come as exceptions
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "CRITICAL")
        import_ray()  # a missing Ray is one line, before the model loads
    # with Ray the workers run the model; here it only tokenises the prompt and names the graphs
    detector = Detector.load(model, device="cpu" if engine == "ray" else device, threads=threads, size=size)
    by_class = _class_thresholds(class_threshold)
    prepared = detector.prepare_prompt(classes)
    thresholds = detector.thresholds(prepared, threshold, by_class)  # a bad class name stops here, before any work
    if not quiet:
        _tuned_note(detector, [chunk.caption for chunk in prepared.chunks])
    try:
        with _ProgressDisplay("labelling", quiet) as display:
            summary = label_folder(
                folder,
                classes,
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
        _print_selection(selection_info(detector, prepared, thresholds, threshold is None, not one_label), console)
        if summary.skipped:
            _print_skipped(group_by_kind(summary.skipped), summary.errors_file)
    raise typer.Exit(summary.exit_code)


@app.command(name="eval")
@handle_errors
def eval_(
    ground_truth: Annotated[
        Path, typer.Argument(metavar="GT.json", help="COCO ground truth (images, annotations, categories).")
    ],
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            "-i",
            help="Folder the ground truth's file names are relative to (default: the 'images' folder beside GT.json).",
        ),
    ] = None,
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
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Threads decoding images ahead of the model.")
    ] = 2,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the numbers to this JSON file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
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
        _check_writable(json_out)
    detector = Detector.load(model, device=device, threads=threads, size=size)
    with _ProgressDisplay("evaluating", quiet) as display:
        report = evaluate_folder(
            ground_truth,
            images if images is not None else ground_truth.parent / "images",
            detector=detector,
            prompt=prompt,
            threshold=threshold,
            max_detections=max_detections,
            workers=workers,
            progress=display.update,
        )
    if json_out is not None:
        from glipcli.io.coco import write_json_atomic

        try:
            write_json_atomic(json_out, report.to_dict())
        except OSError as exc:
            raise ConfigError(f"cannot write {json_out}: {exc.strerror or exc}") from None
    if not quiet:
        _print_metrics(report)
        _tuned_note(detector, report.captions)
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
        from glipcli.progress import group_by_kind

        _print_skipped(group_by_kind(report.skipped), None)


@app.command()
@handle_errors
def calibrate(
    ground_truth: Annotated[
        Path, typer.Argument(metavar="GT.json", help="COCO validation set (images, annotations, categories).")
    ],
    images: Annotated[
        Path | None,
        typer.Option("--images", "-i", help="Folder of the ground truth's images (default: 'images' beside GT.json)."),
    ] = None,
    prompt_file: Annotated[
        Path | None,
        typer.Option("--prompt-file", "-p", help="Classes to prompt with, as for glip eval (default: the categories)."),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Threads decoding images ahead of the model.")
    ] = 2,
    write: Annotated[
        bool, typer.Option("--write/--dry-run", help="Record the threshold in the bundle's manifest (default).")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Choose a model's default score threshold on a validation set and record it in its bundle.

    A box is right when its label names the object's category and IoU >= 0.5 (each object matched once). On the
    one-label output (the default of detect and label) the threshold from 0.05 to 0.95 that maximises F1 of right
    boxes is written into the bundle's manifest.json under "calibration"; detect and label then use it when no
    --threshold is given. The graphs are untouched, so the bundle still verifies. Use images the model was not
    trained on (docs/labels.md).

    [bold]Examples[/]

      glip calibrate val/annotations.json --model exported/glip-nano

      glip calibrate val/annotations.json --model exported/my-model --dry-run
    """
    from glipcli.api import Detector
    from glipcli.calibration import choose_threshold, load_scenes, write_calibration
    from glipcli.prompt import read_prompt_file

    prompt = read_prompt_file(prompt_file) if prompt_file is not None else None
    detector = Detector.load(model, device=device, threads=threads)
    folder = images if images is not None else ground_truth.parent / "images"
    with _ProgressDisplay("calibrating", quiet) as display:
        scenes = load_scenes(ground_truth, folder, detector, prompt=prompt, workers=workers, progress=display.update)
    result = choose_threshold(scenes, ground_truth)
    if write:
        write_calibration(detector.bundle.path, result)
    if not quiet:
        from rich.markup import escape

        where = f"-> {escape(str(detector.bundle.path / 'manifest.json'))}" if write else "(dry run: not written)"
        console.print(
            f"threshold [bold]{result.threshold:g}[/]: F1 {result.f1:.3f}, precision {result.precision:.3f}, "
            f"recall {result.recall:.3f} on {result.images} images, {result.objects} objects {where}",
            highlight=False,
        )


MODES = {"full": "all", "head": "head", "prompt": "prompt"}  # --mode -> TrainConfig.trainable
DEFAULT_LR = {"pretrain": NANO_PRETRAIN["lr"], "full": 1e-4, "head": 1e-3, "prompt": 5e-2}
# Defaults of fine-tuning; pre-training uses NANO_PRETRAIN.
FINETUNE = {"steps": 3000, "batch_size": 8, "precision": "fp32"}
PROMPT_WEIGHT_DECAY = 0.25  # GLIP's prompt tuning recipe: BASE_LR 0.05, WEIGHT_DECAY 0.25


@contextlib.contextmanager
def _training_progress(steps: int, quiet: bool) -> Iterator[Callable[[int, dict[str, float]], None]]:
    """A progress bar that appears with the first finished step: a run refused before it trains
    (unknown config, a run already in --out) prints its error alone. Yields the step callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]training[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    progress = Progress(*columns, console=err_console, disable=quiet, transient=False)
    task = progress.add_task("train", total=steps, loss=float("nan"))

    def on_step(step: int, metrics: dict[str, float]) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=step, loss=metrics["loss"])

    try:
        yield on_step
    finally:
        progress.stop()


def _print_data(data: Any, issues_file: Path | None) -> None:
    """What the training data holds, and every repair made to it (a few here, all in issues_file)."""
    from rich.markup import escape

    pseudo = sum(image.pseudo for image in data.images)
    origin = f" ({len(data.images) - pseudo} gold, {pseudo} pseudo-labelled)" if pseudo else ""
    captions = len(data.chunks)
    console.print(
        f"data: {len(data.images)} images{origin}, {data.boxes} boxes, {len(data.prompt.labels)} classes "
        f"in {captions} caption{'s' * (captions != 1)}: {escape(data.captions[0][:80])}",
        highlight=False,
        soft_wrap=True,
    )
    if data.issues:
        where = f" (all listed in {escape(str(issues_file))})" if issues_file else ""
        err_console.print(
            f"[yellow]{len(data.issues)} annotation(s) clipped, dropped or ignored[/]{where}:", highlight=False
        )
        for issue in data.issues[:5]:
            err_console.print(f"  {escape(issue.file)}: {escape(issue.what)}", highlight=False)


def _write_issues(data: Any, out: Path) -> Path | None:
    if not data.issues:
        return None
    from glipcli.io.coco import write_json_atomic

    path = out / "data_issues.json"
    write_json_atomic(path, [{"file": i.file, "annotation_id": i.annotation_id, "what": i.what} for i in data.issues])
    return path


@app.command()
@handle_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints (last.pt), log.jsonl, model.pth.")],
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Model preset or config file. Default: glip-nano; with --init, the checkpoint's own or the preset's.",
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Fine-tune on this COCO detection file (category names = prompt).")
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", "-i", help="Folder --data's file names are relative to (default: images/ beside it)."),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Weights to fine-tune: a checkpoint file, a model bundle (a folder or a name such as glip-nano: "
            "the weights its graphs hold) or a preset with released weights.",
        ),
    ] = None,
    pseudo: Annotated[
        Path | None, typer.Option("--pseudo", help="Teacher's pseudo-labels (a `glip label` COCO file) to add.")
    ] = None,
    pseudo_images: Annotated[
        Path | None,
        typer.Option(
            "--pseudo-images", help="Folder the pseudo-labels' file names are relative to (default: --images)."
        ),
    ] = None,
    pseudo_threshold: Annotated[
        float,
        typer.Option(
            "--pseudo-threshold",
            min=0.0,
            max=1.0,
            help="Keep pseudo-labels scoring at least this (glip label's default).",
        ),
    ] = DEFAULT_THRESHOLD,
    pseudo_nms: Annotated[
        float,
        typer.Option(
            "--pseudo-nms",
            min=0.01,
            max=1.0,
            help="One pseudo-label per object: drop those overlapping a higher-scoring one by this IoU (1 keeps all).",
        ),
    ] = 0.5,
    mode: Annotated[
        str, typer.Option("--mode", help="What learns: full (all but BERT), head (output layers) or prompt.")
    ] = "full",
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            min=1,
            help=f"Optimiser steps. Default: {NANO_PRETRAIN['steps']} (glip-nano recipe); "
            f"fine-tuning {FINETUNE['steps']}.",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-b",
            min=1,
            help=f"Images per step. Default: {NANO_PRETRAIN['batch_size']} (glip-nano recipe); "
            f"fine-tuning {FINETUNE['batch_size']}.",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            min=0.0,
            help=f"Peak learning rate (cosine schedule). Default: {DEFAULT_LR['pretrain']:g} (glip-nano recipe); "
            f"fine-tuning {DEFAULT_LR['full']:g} (full), {DEFAULT_LR['head']:g} (head), "
            f"{DEFAULT_LR['prompt']:g} (prompt).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the model init and the data.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for PyTorch.")] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help=f"fp32, or bf16 (forward pass under bfloat16 autocast; fast on CPUs with AVX512-BF16). "
            f"Default: {NANO_PRETRAIN['precision']} (glip-nano recipe); fine-tuning {FINETUNE['precision']}.",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    export_to: Annotated[
        Path | None, typer.Option("--export", help="After training, export a verified bundle to this folder.")
    ] = None,
    compact: CompactOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a GLIP with GLIP's own grounding objective: pre-train glip-nano on synthetic shapes,
    or fine-tune any GLIP on labelled data (--data).

    Deterministic given --seed; checkpoints every 100 steps to --out/last.pt (atomically) and
    continues with --resume after an interruption. The final weights are --out/model.pth in the
    official checkpoint layout, which `glip export --weights` turns into a bundle (or pass --export).

    [bold]Fine-tuning[/] (--data, --init): the categories' names, in id order, form the prompt, chunked
    as `glip eval` chunks it. --mode full trains everything but the text encoder, head only the output
    layers (GLIP's linear probing), prompt only a text offset (see `glip tune` for a tuned bundle).

    [bold]Teacher -> student[/]: label unlabelled images with a teacher (`glip label ... --threshold 0`),
    then pass them with --pseudo; those scoring at least --pseudo-threshold join the gold labels, one
    class per object (--pseudo-nms).

    [bold]Data checks[/], before the first step: missing, unreadable or wrongly sized images, unknown
    category ids and empty annotation lists are errors; boxes reaching past the image are clipped and
    boxes outside it dropped, all listed in --out/data_issues.json.

    [bold]Examples[/]

      glip train --config glip-nano --out runs/glip-nano --export my-nano --compact

      glip train --out runs/glip-nano --resume

      glip train --data gold.json --init glip-nano --steps 300 --out runs/ft

      glip train --data gold.json --pseudo teacher.json --pseudo-images unlabelled/ --init glip-t --out runs/student
    """
    require_extra("train", "train")
    from glipcli.train.trainer import TrainConfig

    if mode not in MODES:
        raise ConfigError(f"unknown --mode {mode!r}: use one of {', '.join(MODES)}")
    if data is None:
        given = [flag for flag, value in (("--images", images), ("--init", init), ("--pseudo", pseudo)) if value]
        if given or mode != "full":
            raise ConfigError(f"{', '.join(given) or '--mode'} needs --data (fine-tuning on labelled images)")
    elif init is None:
        raise ConfigError("fine-tuning needs --init: a bundle (e.g. glip-nano), a checkpoint file or a preset")
    if pseudo is None and pseudo_images is not None:
        raise ConfigError("--pseudo-images needs --pseudo")
    if compact and export_to is None:
        raise ConfigError("--compact applies to the exported bundle: add --export FOLDER")
    if export_to is not None and export_to.exists() and any(export_to.iterdir()):
        raise ConfigError(f"--export {export_to} already holds files: remove them or export elsewhere")
    kind = mode if data is not None else "pretrain"
    settings: dict[str, Any] = dict(NANO_PRETRAIN if data is None else FINETUNE)
    settings.update(lr=DEFAULT_LR[kind], seed=seed, threads=threads, checkpoint_every=100)
    given = (("steps", steps), ("batch_size", batch_size), ("lr", lr), ("precision", precision))
    settings.update({k: v for k, v in given if v is not None})
    if data is not None:
        settings.update(trainable=MODES[mode], warmup=min(300, max(1, settings["steps"] // 10)))
        if mode == "prompt":
            settings.update(weight_decay=PROMPT_WEIGHT_DECAY)
    cfg = TrainConfig(**settings)
    model = None
    if data is None:
        from glipcli.train.run import pretrain_synthetic

        with _training_progress(cfg.steps, quiet) as on_step:
            weights = pretrain_synthetic(config or "glip-nano", out, cfg, resume=resume, on_step=on_step)
    else:
        from glipcli.tokenizer import build_tokenizer
        from glipcli.train.coco_data import load_detection_data
        from glipcli.train.run import finetune, initial_weights

        model, _ = initial_weights(init, config, prompt_tuning=mode == "prompt")
        tokenizer = build_tokenizer()
        source = load_detection_data(
            data,
            images if images is not None else data.parent / "images",
            tokenizer,
            model.cfg.language.max_query_len,
            pseudo=pseudo,
            pseudo_images=pseudo_images,
            pseudo_threshold=pseudo_threshold,
            pseudo_nms=pseudo_nms,
            seed=seed,
        )
        out.mkdir(parents=True, exist_ok=True)
        _print_data(source, _write_issues(source, out))
        with _training_progress(cfg.steps, quiet) as on_step:
            weights = finetune(model, source, out, cfg, tokenizer=tokenizer, resume=resume, on_step=on_step)
    console.print(f"wrote [bold]{weights}[/]")
    if export_to is not None:
        from glipcli.export.exporter import build_from_checkpoint, export_bundle
        from glipcli.model.checkpoint import sha256_file

        if model is None:
            model, source_info = build_from_checkpoint(config or "glip-nano", weights)
        else:
            source_info = {"checkpoint": weights.name, "sha256": sha256_file(weights), "config": model.cfg.name}
        if compact:
            source_info = _round_for_export(model, source_info)
        result = export_bundle(
            model.eval(),
            export_to,
            name=model.cfg.name,
            source=source_info,
            log=lambda msg: console.print(f"  {msg}"),
        )
        console.print(f"exported [bold]{result.path}[/]")


@app.command()
@handle_errors
def tune(
    data: Annotated[Path, typer.Option("--data", help="COCO detection file: its category names are the prompt.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tuned bundle folder to write.")],
    images: Annotated[
        Path | None,
        typer.Option("--images", "-i", help="Folder --data's file names are relative to (default: images/ beside it)."),
    ] = None,
    model: ModelOption = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="The checkpoint --model was exported from (checked by sha256). "
            "Default: the weights the bundle's own graphs hold.",
        ),
    ] = None,
    shots: Annotated[
        int | None, typer.Option("--shots", "-k", min=1, help="Use K labelled images per category (default: all).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 200,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per step.")] = 4,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate (cosine schedule).")] = 5e-2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the shot choice and the data order.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for PyTorch.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Model name of the tuned bundle.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle at --out.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted tuning run for --out from its last checkpoint.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Prompt tuning: learn the prompt of --data's classes from a few labelled images, into a new bundle.

    As GLIP does it (language_prompt_v2): the whole model stays frozen and a learned offset is added
    to the text encoder's output. The new bundle shares --model's graphs and carries the tuned text
    features of the prompt's caption, e.g. "orange star." for a category "orange star".

    `glip detect`, `glip label` and `glip eval` with this bundle use the tuned features when the prompt
    is exactly those classes, in that order ("orange star"); any other prompt (another class, a
    description, ...) runs the untuned text encoder. `glip detect` and `glip label` say which;
    `glip info` lists the tuned prompts.

    The PyTorch model is rebuilt from the bundle itself (fp32 bundles exported by this glip export), so
    no checkpoint is needed; --weights takes the one it was exported from instead. A tuned bundle can
    be tuned again: it starts from the untuned model, adds the new caption (or replaces the same
    caption's features) and keeps the other tuned prompts. The run checkpoints every 50 steps into
    .NAME.tune-run beside --out; --resume continues it after an interruption, to the same result.

    [bold]Examples[/]

      glip tune --data rays.json --images ./images --model glip-nano --shots 10 --out exported/nano-rays

      glip detect img.jpg "stingray" --model exported/nano-rays
    """
    require_extra("train", "tune")
    from glipcli.train.trainer import TrainConfig
    from glipcli.train.tune import tune_prompt

    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=min(300, max(1, steps // 10)),
        weight_decay=PROMPT_WEIGHT_DECAY,
        seed=seed,
        threads=threads,
        trainable="prompt",
        checkpoint_every=50,
    )
    with _training_progress(steps, quiet) as on_step:
        result = tune_prompt(
            model,
            weights,
            data,
            images if images is not None else data.parent / "images",
            out,
            cfg,
            shots=shots,
            name=name,
            overwrite=overwrite,
            resume=resume,
            on_data=lambda source: _print_data(source, None),
            on_step=on_step,
        )
    from rich.markup import escape

    captions = ", ".join(repr(entry["caption"]) for entry in result.bundle.prompts.values())
    console.print(
        f"wrote [bold]{escape(str(result.bundle.path))}[/] with tuned prompt(s) {escape(captions)}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@handle_errors
def convert(
    labels: Annotated[Path, typer.Argument(metavar="LABELS.json", help="A COCO file, e.g. the output of glip label.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="yolo, voc, labelstudio, cvat, or several: voc,cvat.")],
    images: Annotated[Path, typer.Option("--images", "-i", help="The folder the labels' file names are relative to.")],
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


@app.command()
@handle_errors
def review(
    labels: Annotated[
        Path, typer.Argument(metavar="LABELS.json", help="A COCO file: glip label's output, or a ground truth.")
    ],
    images: Annotated[Path, typer.Option("--images", "-i", help="The folder the labels' file names are relative to.")],
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


def _unwrap(doc: str) -> str:
    """Docstring paragraphs as one line each, so rich re-wraps them to the terminal's width;
    indented lines (examples) keep their own lines."""
    paragraphs = []
    for block in inspect.cleandoc(doc).split("\n\n"):
        lines = block.splitlines()
        if any(line.startswith(" ") for line in lines):
            paragraphs.append(block)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


for _command in app.registered_commands:
    if _command.callback is not None and _command.callback.__doc__:
        _command.callback.__doc__ = _unwrap(_command.callback.__doc__)
